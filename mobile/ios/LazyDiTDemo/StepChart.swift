import Charts
import SwiftUI

/// The latency of one step and whether the plan skips modules there.
struct StepBar: Identifiable {
    let step: Int
    let millis: Double
    let lazy: Bool

    var id: Int { step }
}

/// Per-step latency as bars; steps that skip modules are drawn in the lazy colour.
struct StepChart: View {
    let bars: [StepBar]

    var body: some View {
        Chart(bars) { bar in
            BarMark(x: .value("Step", bar.step), y: .value("Latency (ms)", bar.millis))
                .foregroundStyle(by: .value("Step kind", bar.lazy ? "lazy" : "computed"))
        }
        .chartForegroundStyleScale(["computed": Color.blue, "lazy": Color.orange])
        .chartXAxisLabel("step")
        .chartYAxisLabel("ms")
        .frame(height: 180)
        .accessibilityLabel("Latency of \(bars.count) steps, \(bars.filter(\.lazy).count) of them lazy")
    }
}
