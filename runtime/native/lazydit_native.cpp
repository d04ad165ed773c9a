// The native runtime of lazydit bundles on ExecuTorch's C++ Module API: the manifest-driven loop
// (no math of its own), the golden-vector check and minibench-style timing, with the JSON reports
// of `lazydit verify` and `lazydit bench`. The same program runs on the desktop, under the emulated
// ARM64 device and, built for Android, is what the app's native runtime does.
//
//   lazydit-native verify --bundle DIR [--threads N]
//   lazydit-native bench --bundle DIR [--baseline DIR] [--warmup N] [--runs N] [--threads N]
//
// Exit status: 0 done (verify: passed), 1 golden check failed, 2 bad bundle or bad arguments.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/platform/runtime.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <numeric>

#include "bundle.hpp"

// The wheel ships libexecutorch_threadpool.so but not its header: the two entry points used here,
// as declared in extension/threadpool/threadpool.h of ExecuTorch 1.5.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace lazydit {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::Float32: return ScalarType::Float;
    case DType::Int64: return ScalarType::Long;
    case DType::UInt8: return ScalarType::Byte;
    case DType::Int32: return ScalarType::Int;
    case DType::Float16: return ScalarType::Half;
  }
  return ScalarType::Float;
}

std::string error_name(Error e) { return "ExecuTorch error " + std::to_string(int(e)); }

// XNNPACK's weights cache and one shared workspace, as the Python backend sets them
// (runtime/xnnpack.py): every method calls the same lowered pieces.
std::string configure_xnnpack(bool weights_cache) {
  executorch::runtime::BackendOptions<2> options;
  options.set_option("weight_cache_enabled", weights_cache);
  options.set_option("workspace_sharing_mode", 2);
  Error e = executorch::runtime::set_option("XnnpackBackend", options.view());
  return e == Error::Ok ? (weights_cache ? "on" : "off") : "off: set_option returned " + error_name(e);
}

struct RunResult {
  Tensor image;
  std::map<std::string, Tensor> state;
  std::vector<double> step_ms;
  double decode_ms = 0, total_ms = 0;
};

using StepHook = std::function<void(size_t, const std::map<std::string, Tensor>&)>;

class Runner {
 public:
  Runner(const Bundle& bundle, int threads) : b_(bundle) {
    if (threads > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(unsigned(threads));
    bool fp16 = b_.raw.contains("precision") && b_.raw["precision"].is_object() &&
                b_.raw["precision"].value("name", "") == "fp16";
    weights_cache_ = configure_xnnpack(!fp16);
    for (const FileSpec& f : b_.program_files) {
      if (f.path.size() > 4 && f.path.compare(f.path.size() - 4, 4, ".ptd") == 0) {
        throw BundleError("this bundle keeps its ExecuTorch weights in " + f.path +
                          "; the native runner loads single-file programs (export with --weights-file never)");
      }
    }
    auto t0 = Clock::now();
    module_ = std::make_unique<Module>(b_.program(), Module::LoadMode::Mmap);
    Error e = module_->load();
    if (e != Error::Ok) throw BundleError("ExecuTorch cannot load " + b_.program() + ": " + error_name(e) + " (truncated or corrupt? re-export)");
    auto names = module_->method_names();
    if (!names.ok()) throw BundleError("ExecuTorch cannot list the methods of " + b_.program());
    for (const auto& [name, spec] : b_.methods) {
      const std::string& inner = b_.program_methods.at(name);
      if (!names->count(inner)) throw BundleError(b_.program() + " lacks method '" + inner + "' named in the manifest; re-export");
      Error le = module_->load_method(inner);
      if (le != Error::Ok) throw BundleError("ExecuTorch cannot load method '" + inner + "': " + error_name(le));
      auto meta = module_->method_meta(inner);
      if (!meta.ok() || meta->num_inputs() != spec.inputs.size() || meta->num_outputs() != spec.outputs.size()) {
        throw BundleError("executorch: method " + name + " takes or returns another number of tensors than the manifest lists");
      }
    }
    load_ms_ = ms_since(t0);
    for (const StepSpec& s : b_.steps) {
      std::map<std::string, Tensor> scalars;
      for (const auto& [k, v] : s.scalars) {
        Tensor t{DType::Float32, {1}, std::vector<uint8_t>(4)};
        std::memcpy(t.data.data(), &v, 4);
        scalars[k] = t;
      }
      scalars_.push_back(scalars);
    }
  }

  double load_ms() const { return load_ms_; }
  const std::string& weights_cache() const { return weights_cache_; }

  RunResult run(const std::map<std::string, Tensor>& initial, const StepHook& hook = nullptr) {
    RunResult r;
    r.state = initial;
    auto start = Clock::now();
    for (size_t i = 0; i < b_.steps.size(); ++i) {
      const StepSpec& step = b_.steps[i];
      std::vector<const Tensor*> feed;
      for (const Port& in : b_.methods.at(step.method).inputs) {
        auto it = r.state.find(in.slot);
        feed.push_back(it != r.state.end() ? &it->second : &scalars_[i].at(in.slot));
      }
      auto t0 = Clock::now();
      execute(step.method, feed, r.state);
      r.step_ms.push_back(ms_since(t0));
      if (hook) hook(i, r.state);
    }
    std::vector<const Tensor*> feed;
    for (const Port& in : b_.methods.at(b_.decode).inputs) feed.push_back(&r.state.at(in.slot));
    auto t0 = Clock::now();
    execute(b_.decode, feed, r.state);
    r.decode_ms = ms_since(t0);
    r.image = r.state.at(b_.methods.at(b_.decode).outputs[0].slot);
    r.total_ms = ms_since(start);
    return r;
  }

 private:
  // One method: inputs read in place from the state, outputs checked against their slots and stored.
  void execute(const std::string& method, const std::vector<const Tensor*>& feed, std::map<std::string, Tensor>& state) {
    std::vector<executorch::extension::TensorPtr> keep;
    std::vector<EValue> inputs;
    for (const Tensor* t : feed) {
      std::vector<executorch::aten::SizesType> sizes(t->shape.begin(), t->shape.end());
      keep.push_back(executorch::extension::from_blob(const_cast<uint8_t*>(t->data.data()), sizes, scalar_type(t->dtype)));
      inputs.emplace_back(*keep.back());
    }
    auto outs = module_->execute(b_.program_methods.at(method), inputs);
    if (!outs.ok()) throw BundleError("ExecuTorch failed to run method '" + method + "': " + error_name(outs.error()));
    const auto& ports = b_.methods.at(method).outputs;
    if (outs->size() != ports.size()) throw BundleError("method " + method + " returned another number of outputs than the manifest lists");
    for (size_t k = 0; k < ports.size(); ++k) {
      const SlotSpec& slot = b_.slots.at(ports[k].slot);
      const EValue& v = (*outs)[k];
      if (!v.isTensor()) throw BundleError("method " + method + " output " + ports[k].name + " is not a tensor");
      const auto& t = v.toTensor();
      std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
      if (t.scalar_type() != scalar_type(slot.dtype) || shape != slot.shape) {
        throw BundleError("method " + method + " output " + ports[k].name + " does not have the shape and dtype of slot " +
                          ports[k].slot + " (" + describe(slot.dtype, slot.shape) + ")");
      }
      Tensor& dst = state[ports[k].slot];
      dst.dtype = slot.dtype;
      dst.shape = shape;
      dst.data.assign(t.const_data_ptr<uint8_t>(), t.const_data_ptr<uint8_t>() + t.nbytes());
    }
  }

  const Bundle& b_;
  std::unique_ptr<Module> module_;
  std::vector<std::map<std::string, Tensor>> scalars_;
  std::string weights_cache_;
  double load_ms_ = 0;
};

// The golden vectors a replay needs, each with the dtype and shape of its slot and finite values.
struct Golden {
  TensorMap tensors;
  std::map<std::string, Tensor> initial;
  std::vector<std::string> x_names;  // per step: the method's output that targets x
  std::string image_name;

  static Golden read(const Bundle& b) {
    Golden g;
    g.tensors = read_tensor_file(b.file(b.golden.path).string());
    auto expect = [&](const std::string& name, const std::string& slot) -> const Tensor& {
      auto it = g.tensors.find(name);
      if (it == g.tensors.end()) throw BundleError(b.golden.path + " lacks " + name + "; re-export the bundle");
      const SlotSpec& s = b.slots.at(slot);
      if (it->second.dtype != s.dtype || it->second.shape != s.shape) {
        throw BundleError(b.golden.path + ": " + name + " is " + describe(it->second.dtype, it->second.shape) +
                          ", slot " + slot + " holds " + describe(s.dtype, s.shape));
      }
      for (size_t i = 0; i < it->second.numel(); ++i) {
        if (!std::isfinite(it->second.at(i))) throw BundleError(b.golden.path + ": " + name + " holds a NaN or infinity");
      }
      return it->second;
    };
    for (const char* slot : {"x", "y", "cfg_scale"}) g.initial[slot] = expect(std::string("init/") + slot, slot);
    for (const StepSpec& s : b.steps) {
      std::string x_name;
      for (const Port& o : b.methods.at(s.method).outputs) if (o.slot == "x") x_name = o.name;
      if (x_name.empty()) throw BundleError("manifest: method " + s.method + " writes no output to slot x");
      expect("step/" + std::to_string(s.index) + "/out/" + x_name, "x");
      g.x_names.push_back(x_name);
    }
    const Port& image = b.methods.at(b.decode).outputs[0];
    expect("decode/out/" + image.name, image.slot);
    g.image_name = image.name;
    return g;
  }
};

double psnr(const Tensor& a, const Tensor& b, double range) {
  double se = 0;
  for (size_t i = 0; i < a.numel(); ++i) se += (a.at(i) - b.at(i)) * (a.at(i) - b.at(i));
  double mse = se / double(std::max<size_t>(a.numel(), 1));
  return mse == 0 ? INFINITY : 10 * std::log10(range * range / mse);
}

Json finite_or_string(double v) { return std::isfinite(v) ? Json(v) : Json("inf"); }

int verify(const std::string& dir, int threads) {
  Bundle b = Bundle::load(dir);
  Golden g = Golden::read(b);
  Runner runner(b, threads);
  std::vector<double> per_step;
  RunResult r = runner.run(g.initial, [&](size_t i, const std::map<std::string, Tensor>& state) {
    per_step.push_back(psnr(state.at("x"), g.tensors.at("step/" + std::to_string(i) + "/out/" + g.x_names[i]), 2.0));
  });
  double image_db = psnr(r.image, g.tensors.at("decode/out/" + g.image_name), 255.0);
  double worst = std::min(image_db, per_step.empty() ? INFINITY : *std::min_element(per_step.begin(), per_step.end()));
  bool passed = worst >= b.floor_db;
  Json steps = Json::array();
  for (double v : per_step) steps.push_back(finite_or_string(v));
  Json out = {{"backend", "executorch-native"}, {"bundle", dir}, {"per_step_psnr_db", steps},
              {"image_psnr_db", finite_or_string(image_db)}, {"min_psnr_db", finite_or_string(worst)},
              {"floor_db", b.floor_db}, {"passed", passed}, {"weights_cache", runner.weights_cache()}};
  std::cout << out.dump() << std::endl;
  return passed ? 0 : 1;
}

// ---- timing, with the metric names and definitions of runtime/bench.py ----

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

double percentile(std::vector<double> v, double q) {  // numpy's linear interpolation
  std::sort(v.begin(), v.end());
  double pos = q / 100 * double(v.size() - 1);
  size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

double trimmed_mean(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t lo = v.size() / 10, hi = v.size() * 9 / 10;
  return hi - lo >= 2 ? mean(std::vector<double>(v.begin() + long(lo), v.begin() + long(hi))) : mean(v);
}

std::string device_name() {
  struct utsname u {};
  uname(&u);
  return std::string(u.sysname) + "-" + u.machine + " (native)";
}

struct Timed {
  std::unique_ptr<Bundle> bundle;  // the runner keeps a reference: the bundle must not move
  std::unique_ptr<Runner> runner;
  std::map<std::string, Tensor> initial;
  std::vector<double> images, decode, overhead;
  std::vector<std::vector<double>> steps;

  void once() {
    RunResult r = runner->run(initial);
    images.push_back(r.total_ms);
    steps.push_back(r.step_ms);
    decode.push_back(r.decode_ms);
    overhead.push_back(r.total_ms - std::accumulate(r.step_ms.begin(), r.step_ms.end(), 0.0) - r.decode_ms);
  }

  Json record(const std::string& role, int warmup) const {
    std::vector<double> per_step(steps[0].size(), 0.0), loops;
    for (const auto& s : steps) {
      for (size_t i = 0; i < s.size(); ++i) per_step[i] += s[i] / double(steps.size());
      loops.push_back(std::accumulate(s.begin(), s.end(), 0.0));
    }
    Json lazy = Json::array();
    for (const StepSpec& s : bundle->steps) if (s.skipped > 0) lazy.push_back(s.index);
    const Json plan = bundle->raw.value("plan", Json::object());
    return {{"avg_inference_latency(ms)", mean(images)},
            {"trimmean_inference_latency(ms)", trimmed_mean(images)},
            {"model_load_time(ms)", runner->load_ms()},
            {"median_latency(ms)", percentile(images, 50)},
            {"p90_latency(ms)", percentile(images, 90)},
            {"per_step_latency(ms)", per_step},
            {"loop_latency(ms)", percentile(loops, 50)},
            {"decode_latency(ms)", mean(decode)},
            {"inference_latencies(ms)", images},
            {"harness_overhead(ms)", mean(overhead)},
            {"harness_overhead_pct", 100 * mean(overhead) / mean(images)},
            {"lazy_steps", lazy},
            {"macs_per_image", plan.value("macs_per_image", Json())},
            {"lazy_ratio", plan.value("lazy_ratio", Json())},
            {"methods", bundle->methods.size()},
            {"warmup", warmup},
            {"runs", images.size()},
            {"backend", "executorch-native"},
            {"bundle", bundle->root.string()},
            {"role", role},
            {"device", device_name()},
            {"weights_cache", runner->weights_cache()},
            {"workspace", "on"}};
  }
};

Timed open_timed(const std::string& dir, int threads) {
  Timed t{std::make_unique<Bundle>(Bundle::load(dir)), nullptr, {}, {}, {}, {}, {}};
  t.initial = Golden::read(*t.bundle).initial;
  t.runner = std::make_unique<Runner>(*t.bundle, threads);
  return t;
}

int bench(const std::string& dir, const std::string& baseline, int warmup, int runs, int threads) {
  if (runs < 1 || warmup < 0) throw BundleError("--runs must be >= 1 and --warmup >= 0");
  std::vector<Timed> timed;
  timed.push_back(open_timed(dir, threads));
  if (!baseline.empty()) {
    timed.push_back(open_timed(baseline, threads));
    if (timed[1].bundle->steps.size() != timed[0].bundle->steps.size()) throw BundleError("the baseline has another number of steps");
    for (const StepSpec& s : timed[1].bundle->steps) if (s.skipped) throw BundleError("the baseline bundle skips modules; export it without --plan");
  }
  for (int w = 0; w < warmup; ++w) for (Timed& t : timed) t.runner->run(t.initial);
  for (int r = 0; r < runs; ++r) {  // interleaved, alternating which goes first
    for (size_t k = 0; k < timed.size(); ++k) timed[r % 2 ? timed.size() - 1 - k : k].once();
  }
  Json records = Json::array();
  records.push_back(timed[0].record(baseline.empty() ? "bundle" : "lazy", warmup));
  if (!baseline.empty()) records.push_back(timed[1].record("baseline", warmup));
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  Json report = {{"threads", threads > 0 ? Json(threads) : Json()}, {"benchmarks", records},
                 {"process_peak_rss_mb", double(usage.ru_maxrss) / 1024.0}};
  if (!baseline.empty()) {
    const Json &lazy = records[0], &base = records[1];
    double measured = base["median_latency(ms)"].get<double>() / lazy["median_latency(ms)"].get<double>();
    double loop = base["loop_latency(ms)"].get<double>() / lazy["loop_latency(ms)"].get<double>();
    Json comparison = {{"measured_speedup", measured},
                       {"measured_speedup_trimmean", base["trimmean_inference_latency(ms)"].get<double>() /
                                                         lazy["trimmean_inference_latency(ms)"].get<double>()},
                       {"loop_speedup", loop}};
    if (lazy["macs_per_image"].is_number() && base["macs_per_image"].is_number()) {
      double ideal = base["macs_per_image"].get<double>() / lazy["macs_per_image"].get<double>();
      comparison["ideal_speedup_macs"] = ideal;
      comparison["efficiency"] = measured / ideal;
      comparison["loop_efficiency"] = loop / ideal;
    }
    report["comparison"] = comparison;
  }
  std::cout << report.dump() << std::endl;
  return 0;
}

int usage(const std::string& why) {
  std::cerr << "error: " << why << "\nusage: lazydit-native verify --bundle DIR [--threads N]\n"
            << "       lazydit-native bench --bundle DIR [--baseline DIR] [--warmup N] [--runs N] [--threads N]\n";
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage("no command");
  std::string command = argv[1], dir, baseline;
  int threads = 0, warmup = 2, runs = 10;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage(a + " needs a value");
    std::string v = argv[++i];
    try {
      if (a == "--bundle") dir = v;
      else if (a == "--baseline") baseline = v;
      else if (a == "--threads") threads = std::stoi(v);
      else if (a == "--warmup") warmup = std::stoi(v);
      else if (a == "--runs") runs = std::stoi(v);
      else return usage("unknown option " + a);
    } catch (const std::logic_error&) {
      return usage(a + " takes an integer, not '" + v + "'");
    }
  }
  if (dir.empty()) return usage("--bundle DIR is required");
  executorch::runtime::runtime_init();
  try {
    if (command == "verify") return verify(dir, threads);
    if (command == "bench") return bench(dir, baseline, warmup, runs, threads);
    return usage("unknown command '" + command + "' (verify, bench)");
  } catch (const BundleError& e) {
    std::cerr << "error: " << e.what() << std::endl;
  } catch (const Json::exception& e) {
    std::cerr << "error: manifest: " << e.what() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
  }
  return 2;
}

}  // namespace lazydit

int main(int argc, char** argv) { return lazydit::main(argc, argv); }
