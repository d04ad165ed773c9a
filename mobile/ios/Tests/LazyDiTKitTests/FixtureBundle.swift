import Foundation
@testable import LazyDiTKit

/// A hand-made three-step bundle, the same as the Java core's: step 0 computes attention and keeps
/// it in cache:0.attn, step 1 skips attention and reads the cache, step 2 runs without attention;
/// decode makes a 2x2 grey image. golden.lzt is written by an explicit reference loop.
enum FixtureBundle {
    static let xShape = [1, 1, 2, 2]
    static let imageShape = [2, 2, 1]
    static let label: Int64 = 3
    static let cfg: Float = 1.5
    static let scalars: [[Float]] = [[900, 0.5, 0.75], [500, 0.75, 0.875], [100, 0.875, 1]]
    static let methods = ["step_full", "step_lazy", "step_last"]

    static func manifestJSON() -> [String: Any] {
        func slot(_ shape: [Int], _ dtype: String) -> [String: Any] { ["shape": shape, "dtype": dtype] }
        func ports(_ slotKey: String, _ pairs: [(String, String)]) -> [[String: String]] {
            pairs.map { ["name": $0.0, slotKey: $0.1] }
        }
        func method(_ inputs: [(String, String)], _ outputs: [(String, String)]) -> [String: Any] {
            ["inputs": ports("source", inputs), "outputs": ports("target", outputs)]
        }
        var steps: [[String: Any]] = []
        for i in 0..<3 {
            var step: [String: Any] = [:]
            step["index"] = i
            step["method"] = methods[i]
            step["scalars"] = ["t": scalars[i][0], "alpha": scalars[i][1], "alpha_prev": scalars[i][2]]
            step["computed"] = i == 1 ? ["0.mlp"] : ["0.attn", "0.mlp"]
            step["skipped"] = i == 1 ? ["0.attn"] : [String]()
            step["macs"] = 1000
            steps.append(step)
        }
        var model: [String: Any] = [:]
        model["name"] = "toy"
        model["image"] = ["height": 2, "width": 2, "channels": 1]
        model["num_classes"] = 10
        model["null_class"] = 10
        model["timing_only"] = false

        var slots: [String: Any] = [:]
        slots["x"] = slot(xShape, "float32")
        slots["y"] = slot([1], "int64")
        slots["cfg_scale"] = slot([1], "float32")
        slots["cache:0.attn"] = slot(xShape, "float32")
        slots["image"] = slot(imageShape, "uint8")

        var methodSpecs: [String: Any] = [:]
        methodSpecs["step_full"] = method(
            [("x", "x"), ("y", "y"), ("cfg_scale", "cfg_scale"), ("t", "t"), ("alpha", "alpha")],
            [("x_next", "x"), ("attn_0", "cache:0.attn")])
        methodSpecs["step_lazy"] = method(
            [("x", "x"), ("cfg_scale", "cfg_scale"), ("t", "t"), ("alpha", "alpha"), ("cache_attn_0", "cache:0.attn")],
            [("x_next", "x")])
        methodSpecs["step_last"] = method([("x", "x"), ("t", "t"), ("alpha", "alpha")], [("x_next", "x")])
        methodSpecs["decode"] = method([("sample", "x")], [("image", "image")])

        var golden: [String: Any] = [:]
        golden["path"] = "golden.lzt"
        golden["label"] = label
        golden["cfg_scale"] = cfg
        golden["seed"] = 7

        var m: [String: Any] = [:]
        m["format"] = "lazydit-bundle"
        m["version"] = 1
        m["model"] = model
        m["slots"] = slots
        m["methods"] = methodSpecs
        m["steps"] = steps
        m["decode"] = "decode"
        m["golden"] = golden
        m["artifacts"] = [String: Any]()
        return m
    }

    static func data(_ json: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: json)
    }

    static func manifest() throws -> Manifest {
        try Manifest.parse(data(manifestJSON()))
    }

    /// Writes manifest.json (with the golden digest filled in) and golden.lzt into `dir`.
    @discardableResult
    static func write(_ dir: URL) throws -> URL {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let golden = dir.appendingPathComponent("golden.lzt")
        try TensorFile.write(golden, goldenTensors())
        var json = manifestJSON()
        var spec = json["golden"] as! [String: Any]
        spec["sha256"] = try BundleIntegrity.sha256(golden)
        json["golden"] = spec
        try data(json).write(to: dir.appendingPathComponent(Manifest.fileName))
        return dir
    }

    static func initialNoise() throws -> Tensor {
        try Tensor(floats: [0.25, -0.5, 0.75, -1], shape: xShape)
    }

    /// The reference run, written out step by step with the names docs/bundle.md gives.
    static func goldenTensors() throws -> NamedTensors {
        var g = NamedTensors()
        let x = try initialNoise()
        let y = try Tensor(int64s: [label], shape: [1])
        let cfgT = Tensor.scalar(cfg)
        g.set("init/x", x)
        g.set("init/y", y)
        g.set("init/cfg_scale", cfgT)

        let (t0, a0) = (Tensor.scalar(scalars[0][0]), Tensor.scalar(scalars[0][1]))
        for (name, value) in [("x", x), ("y", y), ("cfg_scale", cfgT), ("t", t0), ("alpha", a0)] {
            g.set("step/0/in/\(name)", value)
        }
        let full = ToyModel.full(try x.floats(), label, cfg, scalars[0][0], scalars[0][1])
        let x1 = try Tensor(floats: full.next, shape: xShape)
        let cache = try Tensor(floats: full.attn, shape: xShape)
        g.set("step/0/out/x_next", x1)
        g.set("step/0/out/attn_0", cache)

        let (t1, a1) = (Tensor.scalar(scalars[1][0]), Tensor.scalar(scalars[1][1]))
        for (name, value) in [("x", x1), ("cfg_scale", cfgT), ("t", t1), ("alpha", a1), ("cache_attn_0", cache)] {
            g.set("step/1/in/\(name)", value)
        }
        let lazy = ToyModel.lazy(try x1.floats(), cfg, scalars[1][0], scalars[1][1], try cache.floats())
        let x2 = try Tensor(floats: lazy, shape: xShape)
        g.set("step/1/out/x_next", x2)

        let (t2, a2) = (Tensor.scalar(scalars[2][0]), Tensor.scalar(scalars[2][1]))
        for (name, value) in [("x", x2), ("t", t2), ("alpha", a2)] {
            g.set("step/2/in/\(name)", value)
        }
        let x3 = try Tensor(floats: ToyModel.last(try x2.floats(), scalars[2][0], scalars[2][1]), shape: xShape)
        g.set("step/2/out/x_next", x3)
        g.set("decode/out/image", try Tensor(uint8s: ToyModel.decode(try x3.floats()), shape: imageShape))
        return g
    }
}
