import Foundation
import LazyDiTKit

/// The runtimes the app can run a bundle with.
enum BackendChoice: String, CaseIterable, Identifiable {
    case coreml = "Core ML"
    case executorch = "ExecuTorch"

    var id: Self { self }

    func make() -> Backend {
        switch self {
        case .coreml: return CoreMLBackend()
        case .executorch: return ExecuTorchBackend()
        }
    }

    /// "coreml" / "executorch" on the command line, as in reports.
    init?(argument: String) {
        switch argument.lowercased() {
        case CoreMLBackend.format: self = .coreml
        case ExecuTorchBackend.format: self = .executorch
        default: return nil
        }
    }
}

/// A bundle whose artifacts passed their digest check and are loaded into a backend, ready to run.
/// Used from one task at a time: backends are not thread-safe.
final class LoadedBundle {
    let folder: BundleFolder
    let backend: Backend
    /// Time to load the program and all its methods, minibench's model_load_time.
    let loadMillis: Double
    let runner: BundleRunner

    private init(folder: BundleFolder, backend: Backend, loadMillis: Double) {
        self.folder = folder
        self.backend = backend
        self.loadMillis = loadMillis
        runner = BundleRunner(manifest: folder.manifest, backend: backend)
    }

    var manifest: Manifest { folder.manifest }

    /// The guidance scale the golden run used; 1 (no guidance) for bundles without golden vectors.
    var cfgScale: Float { Float(manifest.golden?.cfgScale ?? 1) }

    /// The class the golden run used, a sensible first pick in the class list.
    var defaultLabel: Int { Int(manifest.golden?.label ?? 0) }

    /// Opens `dir`, checks its artifacts' digests, compiles a Core ML package once per device
    /// (not timed), then loads the backend (timed).
    static func open(_ dir: URL, backend: Backend) async throws -> LoadedBundle {
        let folder = try BundleFolder.open(dir)
        try folder.verifyArtifacts(format: backend.name)
        if backend is CoreMLBackend {
            try await CoreMLBackend.prepare(bundleDir: dir, manifest: folder.manifest)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        try backend.load(bundleDir: dir, manifest: folder.manifest)
        let millis = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return LoadedBundle(folder: folder, backend: backend, loadMillis: millis)
    }

    func generate(label: Int, seed: UInt64) throws -> RunResult {
        try runner.run(State.initial(noise: folder.noise(seed: seed), label: Int64(label), cfgScale: cfgScale))
    }

    func checkGolden() throws -> VerifyReport {
        try Verifier.verify(runner, folder.readGolden())
    }

    /// The golden run's starting state when there is one, so benchmarks time the checked input.
    func benchmarkInput() throws -> State {
        if folder.hasGolden {
            return try folder.readGolden().initialState()
        }
        return State.initial(noise: try folder.noise(seed: 0), label: Int64(defaultLabel), cfgScale: cfgScale)
    }

    func close() {
        backend.close()
    }
}

/// Where the app finds bundles and how it names the phone in reports.
enum Bundles {
    /// The app's Documents folder, shared in Finder / the Files app (UIFileSharingEnabled).
    static var root: URL {
        FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
    }

    /// Sub-folders of `root` that hold a manifest.json, by name.
    static func list() -> [URL] {
        let fm = FileManager.default
        let entries = (try? fm.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
        return entries
            .filter { fm.fileExists(atPath: $0.appendingPathComponent(Manifest.fileName).path) }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// "iPhone16,2 (iOS 18.1)".
    static func device() -> String {
        var info = utsname()
        uname(&info)
        let machine = withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let os = ProcessInfo.processInfo.operatingSystemVersion
        return "\(machine) (iOS \(os.majorVersion).\(os.minorVersion).\(os.patchVersion))"
    }
}
