import CoreGraphics
import Foundation
import LazyDiTKit

/// The main screen's state: pick a bundle, a backend and a class, generate, look at the latency.
/// Backend work runs off the main actor, one task at a time (the buttons are disabled meanwhile).
@MainActor
final class DemoModel: ObservableObject {
    @Published var bundles: [URL] = []
    @Published var selectedBundle: URL?
    @Published var backendChoice: BackendChoice = .coreml
    @Published var classes: [Int] = []
    @Published var selectedClass = 0
    @Published private(set) var status = ""
    @Published private(set) var image: CGImage?
    @Published private(set) var latency = ""
    @Published private(set) var stepBars: [StepBar] = []
    @Published private(set) var busy = false
    @Published private(set) var ready = false
    @Published private(set) var hasGolden = false
    @Published private(set) var timingOnly = false

    private var loaded: LoadedBundle?

    func refresh() {
        bundles = Bundles.list()
        if bundles.isEmpty {
            status = "No bundle found. Copy a bundle folder into this app's Documents "
                + "(Finder > your iPhone > Files > LazyDiT), then reopen the app."
        } else if selectedBundle == nil {
            selectedBundle = bundles[0]
        }
    }

    func open() {
        guard let dir = selectedBundle else { return }
        let backend = backendChoice.make()
        let previous = loaded
        loaded = nil
        ready = false
        busy = true
        status = "Loading \(dir.lastPathComponent) with \(backendChoice.rawValue)…"
        Task.detached(priority: .userInitiated) {
            previous?.close()
            do {
                let bundle = try await LoadedBundle.open(dir, backend: backend)
                await self.didOpen(bundle)
            } catch {
                await self.fail(error)
            }
        }
    }

    func generate() {
        guard let bundle = loaded else { return }
        let label = selectedClass
        let seed = UInt64.random(in: 0...UInt64.max)
        busy = true
        status = "Generating…"
        Task.detached(priority: .userInitiated) {
            do {
                let result = try bundle.generate(label: label, seed: seed)
                let pixels = try ImagePixels.of(result.image, bundle.manifest.model.image)
                await self.show(result, pixels: pixels, lazy: bundle.manifest.steps.map(\.isLazy), seed: seed)
            } catch {
                await self.fail(error)
            }
        }
    }

    func checkGolden() {
        guard let bundle = loaded else { return }
        busy = true
        status = "Checking against golden vectors…"
        Task.detached(priority: .userInitiated) {
            do {
                let report = try bundle.checkGolden()
                await self.finish(report.summary)
            } catch {
                await self.fail(error)
            }
        }
    }

    private func didOpen(_ bundle: LoadedBundle) {
        loaded = bundle
        let m = bundle.manifest
        classes = Array(0..<max(m.model.numClasses, 1))
        selectedClass = min(max(bundle.defaultLabel, 0), classes.count - 1)
        hasGolden = bundle.folder.hasGolden
        timingOnly = m.model.timingOnly
        ready = true
        finish(String(format: "%@: %ld steps, %ld lazy, loaded in %.0f ms", bundle.folder.name, m.steps.count,
                      m.lazySteps.count, bundle.loadMillis))
    }

    private func show(_ result: RunResult, pixels: ImagePixels, lazy: [Bool], seed: UInt64) {
        image = pixels.cgImage()
        let steps = result.stepMillis
        latency = String(format: "total %.1f ms · steps %.1f ms · decode %.1f ms · seed %llu",
                         result.totalMillis, steps.reduce(0, +), result.decodeMillis, seed)
        stepBars = steps.enumerated().map { StepBar(step: $0.offset, millis: $0.element, lazy: lazy[$0.offset]) }
        finish("Done.")
    }

    private func fail(_ error: Error) {
        finish("Failed: \(error.localizedDescription)")
    }

    private func finish(_ message: String) {
        status = message
        busy = false
    }
}
