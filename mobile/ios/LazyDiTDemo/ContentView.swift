import LazyDiTKit
import SwiftUI

/// Pick a bundle and a class, generate, and see the image with the latency of every step.
struct ContentView: View {
    @StateObject private var model = DemoModel()

    var body: some View {
        NavigationStack {
            Form {
                Section("Bundle") {
                    Picker("Bundle", selection: $model.selectedBundle) {
                        ForEach(model.bundles, id: \.self) { url in
                            Text(url.lastPathComponent).tag(Optional(url))
                        }
                    }
                    Picker("Backend", selection: $model.backendChoice) {
                        ForEach(BackendChoice.allCases) { choice in
                            Text(choice.rawValue).tag(choice)
                        }
                    }
                    .pickerStyle(.segmented)
                    Picker("Class", selection: $model.selectedClass) {
                        ForEach(model.classes, id: \.self) { label in
                            Text("\(label)").tag(label)
                        }
                    }
                    HStack {
                        Button("Generate") { model.generate() }
                            .disabled(!model.ready || model.busy)
                        Spacer()
                        Button("Check golden") { model.checkGolden() }
                            .disabled(!model.ready || model.busy || !model.hasGolden)
                    }
                    .buttonStyle(.borderless)
                    Text(model.status)
                        .font(.callout)
                        .textSelection(.enabled)
                }
                Section("Result") {
                    if let image = model.image {
                        Image(decorative: image, scale: 1)
                            .interpolation(.none)
                            .resizable()
                            .aspectRatio(contentMode: .fit)
                            .frame(maxWidth: 256, maxHeight: 256)
                            .frame(maxWidth: .infinity)
                            .accessibilityLabel("Generated image")
                    }
                    if model.timingOnly {
                        Text("This bundle has random weights (latency only): the image is noise by design.")
                            .font(.footnote)
                    }
                    if !model.latency.isEmpty {
                        Text(model.latency).font(.body.monospacedDigit())
                    }
                    if !model.stepBars.isEmpty {
                        StepChart(bars: model.stepBars)
                        Text("Bars: latency per step. Blue steps compute every module; "
                            + "orange steps reuse cached modules.")
                            .font(.footnote)
                    }
                }
            }
            .navigationTitle("LazyDiT")
            .onAppear { model.refresh() }
            .onChange(of: model.selectedBundle) { model.open() }
            .onChange(of: model.backendChoice) { model.open() }
        }
    }
}
