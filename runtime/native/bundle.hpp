// A bundle folder as the native runner reads it: manifest.json checked field by field (types,
// cross references, finite numbers), every file path kept inside the folder, digests verified.
// The checks mirror runtime/bundle.py and the Java and Swift cores, so all runtimes refuse alike.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sha256.hpp"
#include "tensorfile.hpp"

namespace lazydit {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct SlotSpec {
  DType dtype;
  std::vector<int64_t> shape;
};

struct Port {
  std::string name;
  std::string slot;  // an input's source or an output's target
};

struct MethodSpec {
  std::vector<Port> inputs, outputs;
};

struct StepSpec {
  int index;
  std::string method;
  std::map<std::string, float> scalars;
  int skipped;
};

struct FileSpec {
  std::string path, sha256;
  uint64_t bytes;
};

struct Bundle {
  fs::path root;
  Json raw;
  std::map<std::string, SlotSpec> slots;
  std::map<std::string, MethodSpec> methods;
  std::vector<StepSpec> steps;
  std::string decode;
  std::vector<FileSpec> program_files;       // the executorch artifact's files
  std::map<std::string, std::string> program_methods;  // manifest method -> program method
  FileSpec golden;
  double floor_db = 40.0;

  static Bundle load(const std::string& dir);
  fs::path file(const std::string& relative) const { return root / relative; }
  std::string program() const;
};

// A JSON field of a given kind, or a BundleError naming it.
inline const Json& field(const Json& obj, const std::string& key, Json::value_t kind, const std::string& where) {
  if (!obj.is_object()) throw BundleError("manifest: " + where + " is not an object");
  auto it = obj.find(key);
  if (it == obj.end()) throw BundleError("manifest: " + where + " lacks the field '" + key + "'; re-export the bundle");
  bool ok = it->type() == kind || (kind == Json::value_t::number_integer && it->is_number_unsigned()) ||
            (kind == Json::value_t::number_float && it->is_number());
  if (!ok) {
    static const std::map<Json::value_t, const char*> names = {
        {Json::value_t::object, "an object"}, {Json::value_t::array, "a list"},
        {Json::value_t::string, "a string"}, {Json::value_t::number_integer, "an integer"},
        {Json::value_t::number_float, "a number"}, {Json::value_t::boolean, "a boolean"}};
    throw BundleError("manifest: " + where + "." + key + " must be " + names.at(kind) + ", not " + it->type_name());
  }
  return *it;
}

inline const std::string& text(const Json& obj, const std::string& key, const std::string& where) {
  return field(obj, key, Json::value_t::string, where).get_ref<const std::string&>();
}

inline int64_t integer(const Json& obj, const std::string& key, const std::string& where) {
  return field(obj, key, Json::value_t::number_integer, where).get<int64_t>();
}

inline double number(const Json& obj, const std::string& key, const std::string& where) {
  double v = field(obj, key, Json::value_t::number_float, where).get<double>();
  if (!std::isfinite(v)) throw BundleError("manifest: " + where + "." + key + " is not a finite number");
  return v;
}

// A bundle-relative file name: no absolute path, no '..', no symlink that leaves the folder.
inline std::string inside(const fs::path& root, const std::string& relative, const std::string& where) {
  fs::path p(relative);
  bool bad = relative.empty() || p.is_absolute() || relative.find('\\') != std::string::npos ||
             relative.find('\0') != std::string::npos;
  for (const auto& part : p) bad = bad || part == "..";
  if (bad) throw BundleError("manifest: " + where + " '" + relative + "' is not a file name inside the bundle folder");
  std::error_code ec;
  fs::path real = fs::weakly_canonical(root / p, ec), base = fs::canonical(root, ec);
  std::string r = real.string(), b = base.string() + "/";
  if (ec || r.compare(0, b.size(), b) != 0) {
    throw BundleError("manifest: " + where + " '" + relative + "' resolves outside the bundle folder");
  }
  return relative;
}

inline FileSpec file_spec(const fs::path& root, const Json& entry, const std::string& where) {
  FileSpec f;
  f.path = inside(root, text(entry, "path", where), where + ".path");
  f.sha256 = text(entry, "sha256", where);
  bool hex = f.sha256.size() == 64 && f.sha256.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) throw BundleError("manifest: " + where + ".sha256 is not 64 lowercase hex digits");
  f.bytes = entry.contains("bytes") ? uint64_t(integer(entry, "bytes", where)) : 0;
  return f;
}

inline void check_file(const Bundle& b, const FileSpec& f) {
  fs::path path = b.file(f.path);
  if (!fs::is_regular_file(path)) throw BundleError(f.path + " is missing from " + b.root.string() + "; re-export the bundle");
  std::string digest;
  uint64_t size = 0;
  if (!sha256_file(path.string(), &digest, &size)) throw BundleError(f.path + ": cannot be read");
  if (digest != f.sha256 || (f.bytes && size != f.bytes)) {
    throw BundleError(f.path + " does not match its sha256 in the manifest (modified or corrupt); re-export the bundle");
  }
}

inline std::vector<Port> ports(const Json& list, const char* slot_key, const std::string& where) {
  if (!list.is_array()) throw BundleError("manifest: " + where + " must be a list");
  std::vector<Port> out;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string at = where + "[" + std::to_string(i) + "]";
    out.push_back({text(list[i], "name", at), text(list[i], slot_key, at)});
  }
  return out;
}

inline void parse_slots(Bundle& b) {
  for (const auto& [name, spec] : field(b.raw, "slots", Json::value_t::object, "manifest").items()) {
    std::string where = "slots." + name;
    SlotSpec s;
    if (!parse_dtype(text(spec, "dtype", where), &s.dtype)) {
      throw BundleError("manifest: " + where + ".dtype '" + spec["dtype"].get<std::string>() +
                        "' is not float32, float16, int64, int32 or uint8");
    }
    const Json& shape = field(spec, "shape", Json::value_t::array, where);
    uint64_t numel = 1;
    for (const Json& d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t(1) << 31)) {
        throw BundleError("manifest: " + where + ".shape must list non-negative integers");
      }
      numel *= uint64_t(d.get<int64_t>());
      if (numel > (uint64_t(1) << 34)) throw BundleError("manifest: " + where + ".shape is impossibly large");
      s.shape.push_back(d.get<int64_t>());
    }
    b.slots.emplace(name, s);
  }
  for (const char* required : {"x", "y", "cfg_scale"}) {
    if (!b.slots.count(required)) throw BundleError(std::string("manifest: slots lacks '") + required + "'");
  }
}

inline void parse_steps(Bundle& b) {
  const Json& steps = field(b.raw, "steps", Json::value_t::array, "manifest");
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string where = "steps[" + std::to_string(i) + "]";
    StepSpec s;
    s.index = int(integer(steps[i], "index", where));
    if (s.index != int(i)) throw BundleError("manifest: " + where + ".index is " + std::to_string(s.index));
    s.method = text(steps[i], "method", where);
    if (!b.methods.count(s.method)) throw BundleError("manifest: step " + std::to_string(i) + " names unknown method '" + s.method + "'");
    for (const auto& [k, v] : field(steps[i], "scalars", Json::value_t::object, where).items()) {
      double value = number(steps[i]["scalars"], k, where + ".scalars");
      if (std::fabs(value) > std::numeric_limits<float>::max()) {
        throw BundleError("manifest: " + where + ".scalars." + k + " does not fit a float32");
      }
      s.scalars[k] = float(value);
    }
    s.skipped = steps[i].contains("skipped") ? int(integer(steps[i], "skipped", where)) : 0;
    for (const Port& in : b.methods[s.method].inputs) {
      if (!b.slots.count(in.slot) && !s.scalars.count(in.slot)) {
        throw BundleError("manifest: step " + std::to_string(i) + ": input " + in.name + " reads '" + in.slot +
                          "', which is neither a slot nor one of the step's scalars");
      }
    }
    b.steps.push_back(s);
  }
  int64_t sampler_steps = integer(field(b.raw, "sampler", Json::value_t::object, "manifest"), "steps", "sampler");
  if (sampler_steps != int64_t(b.steps.size())) {
    throw BundleError("manifest lists " + std::to_string(b.steps.size()) + " steps, the sampler " + std::to_string(sampler_steps));
  }
}

inline Bundle Bundle::load(const std::string& dir) {
  Bundle b;
  b.root = fs::path(dir);
  fs::path manifest = b.root / "manifest.json";
  if (!fs::is_regular_file(manifest)) throw BundleError(dir + " is not a bundle: no manifest.json (make one with `lazydit export`)");
  std::ifstream in(manifest);
  try {
    b.raw = Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw BundleError(manifest.string() + ": not JSON (" + e.what() + ")");
  }
  if (!b.raw.is_object()) throw BundleError("manifest: not a JSON object");
  if (text(b.raw, "format", "manifest") != "lazydit-bundle" || integer(b.raw, "version", "manifest") != 1) {
    throw BundleError("not a lazydit bundle manifest (version 1)");
  }
  parse_slots(b);
  for (const auto& [name, m] : field(b.raw, "methods", Json::value_t::object, "manifest").items()) {
    std::string where = "methods." + name;
    MethodSpec spec{ports(field(m, "inputs", Json::value_t::array, where), "source", where + ".inputs"),
                    ports(field(m, "outputs", Json::value_t::array, where), "target", where + ".outputs")};
    for (const Port& out : spec.outputs) {
      if (!b.slots.count(out.slot)) throw BundleError("manifest: method " + name + ": output " + out.name + " targets unknown slot '" + out.slot + "'");
    }
    b.methods.emplace(name, spec);
  }
  b.decode = text(b.raw, "decode", "manifest");
  if (!b.methods.count(b.decode)) throw BundleError("manifest: decode method '" + b.decode + "' is not among the methods");
  for (const Port& in : b.methods[b.decode].inputs) {
    if (!b.slots.count(in.slot)) throw BundleError("manifest: decode input " + in.name + " reads unknown slot '" + in.slot + "'");
  }
  if (b.methods[b.decode].outputs.empty()) throw BundleError("manifest: the decode method has no outputs");
  parse_steps(b);
  const Json& artifacts = field(b.raw, "artifacts", Json::value_t::object, "manifest");
  if (!artifacts.contains("executorch")) throw BundleError("this bundle has no executorch artifact; export it with --formats executorch");
  const Json& et = field(artifacts, "executorch", Json::value_t::object, "artifacts");
  const Json& files = field(et, "files", Json::value_t::array, "artifacts.executorch");
  for (size_t i = 0; i < files.size(); ++i) b.program_files.push_back(file_spec(b.root, files[i], "artifacts.executorch.files[" + std::to_string(i) + "]"));
  for (const auto& [k, v] : field(et, "methods", Json::value_t::object, "artifacts.executorch").items()) {
    b.program_methods[k] = text(et["methods"], k, "artifacts.executorch.methods");
  }
  for (const auto& [name, m] : b.methods) {
    if (!b.program_methods.count(name)) throw BundleError("executorch artifact lacks method '" + name + "'; re-export the bundle");
  }
  const Json& golden = field(b.raw, "golden", Json::value_t::object, "manifest");
  b.golden = file_spec(b.root, golden, "golden");
  if (golden.contains("floor_db")) b.floor_db = number(golden, "floor_db", "golden");
  for (const FileSpec& f : b.program_files) check_file(b, f);
  check_file(b, b.golden);
  return b;
}

inline std::string Bundle::program() const {
  for (const FileSpec& f : program_files) {
    if (f.path.size() > 4 && f.path.compare(f.path.size() - 4, 4, ".pte") == 0) return file(f.path).string();
  }
  throw BundleError("the bundle's executorch artifact lists no .pte file; re-export the bundle");
}

}  // namespace lazydit
