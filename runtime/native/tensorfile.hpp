// The bundle's .lzt tensor file (runtime/tensorfile.py has the layout): every length is checked
// against the bytes that are left, so a truncated or tampered file is refused, never over-read.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace lazydit {

struct BundleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType { Float32 = 0, Int64 = 1, UInt8 = 2, Int32 = 3, Float16 = 4 };

inline size_t item_size(DType d) {
  switch (d) {
    case DType::Float32: return 4;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::Int32: return 4;
    case DType::Float16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Float16: return "float16";
  }
  return "?";
}

inline bool parse_dtype(const std::string& name, DType* out) {
  for (DType d : {DType::Float32, DType::Int64, DType::UInt8, DType::Int32, DType::Float16}) {
    if (name == dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

struct Tensor {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  size_t numel() const { return data.size() / item_size(dtype); }
  double at(size_t i) const;  // element i widened to double
};

inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    float magnitude = float(mantissa) * 5.9604644775390625e-8f;  // 2^-24
    return sign ? -magnitude : magnitude;
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline double Tensor::at(size_t i) const {
  const uint8_t* p = data.data() + i * item_size(dtype);
  switch (dtype) {
    case DType::Float32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::Int64: { int64_t v; std::memcpy(&v, p, 8); return double(v); }
    case DType::UInt8: return *p;
    case DType::Int32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::Float16: { uint16_t v; std::memcpy(&v, p, 2); return half_to_float(v); }
  }
  return 0;
}

inline std::string describe(DType dtype, const std::vector<int64_t>& shape) {
  std::string s = std::string(dtype_name(dtype)) + "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Tensors by name, in file order.
using TensorMap = std::map<std::string, Tensor>;

inline TensorMap read_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw BundleError(path + ": cannot be read");
  std::vector<uint8_t> buf(size_t(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(buf.size()));
  size_t pos = 0;
  auto need = [&](uint64_t n, const std::string& what) {
    if (n > buf.size() - pos) throw BundleError(path + ": truncated inside " + what + "; re-export the bundle");
  };
  auto u32 = [&](const std::string& what) {
    need(4, what);
    uint32_t v;
    std::memcpy(&v, buf.data() + pos, 4);
    pos += 4;
    return v;
  };
  auto u64 = [&](const std::string& what) {
    need(8, what);
    uint64_t v;
    std::memcpy(&v, buf.data() + pos, 8);
    pos += 8;
    return v;
  };
  if (buf.size() < 4 || std::memcmp(buf.data(), "LZT1", 4) != 0) {
    throw BundleError(path + ": not a lazydit tensor file (bad magic)");
  }
  pos = 4;
  uint32_t count = u32("the header");
  TensorMap out;
  for (uint32_t k = 0; k < count; ++k) {
    uint32_t name_len = u32("a tensor name");
    need(name_len, "a tensor name");
    std::string name(reinterpret_cast<const char*>(buf.data() + pos), name_len);
    pos += name_len;
    std::string where = "tensor '" + name + "'";
    need(1, where);
    uint8_t code = buf[pos++];
    if (code > 4) throw BundleError(path + ": " + where + " has unknown dtype code " + std::to_string(code));
    Tensor t;
    t.dtype = DType(code);
    uint32_t ndim = u32(where);
    if (ndim > 16) throw BundleError(path + ": " + where + " has " + std::to_string(ndim) + " dimensions");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < ndim; ++d) {
      uint64_t dim = u64(where);
      if (dim > (uint64_t(1) << 40) || (dim && numel > (uint64_t(1) << 40) / dim)) {
        throw BundleError(path + ": " + where + " has an impossible shape");
      }
      numel *= dim;
      t.shape.push_back(int64_t(dim));
    }
    uint64_t nbytes = u64(where);
    if (nbytes != numel * item_size(t.dtype)) {
      throw BundleError(path + ": " + where + " holds " + std::to_string(nbytes) + " bytes, its shape " +
                        describe(t.dtype, t.shape) + " needs " + std::to_string(numel * item_size(t.dtype)));
    }
    need(nbytes, where);
    t.data.assign(buf.begin() + long(pos), buf.begin() + long(pos + nbytes));
    pos += nbytes;
    if (!out.emplace(name, std::move(t)).second) throw BundleError(path + ": " + where + " appears twice");
  }
  if (pos != buf.size()) throw BundleError(path + ": " + std::to_string(buf.size() - pos) + " trailing bytes");
  return out;
}

}  // namespace lazydit
