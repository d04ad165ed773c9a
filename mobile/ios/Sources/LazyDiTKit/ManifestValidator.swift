import Foundation

/// The bundle contract's rules that JSON types cannot express: steps name existing methods, every
/// input's source is a slot or a scalar of each step that uses it, outputs land in declared slots,
/// a slot is written before it is read (so every cache slot is routed), and decode exists.
enum ManifestValidator {
    static func problems(_ m: Manifest) -> [String] {
        var problems: [String] = []
        if !m.isSlot(State.x) {
            problems.append("slots: no 'x' slot; the runtime needs its shape to make the initial noise")
        }
        for method in m.methods.values.sorted(by: { $0.name < $1.name }) {
            for o in method.outputs where !m.isSlot(o.target) {
                problems.append("method '\(method.name)' output '\(o.name)' targets '\(o.target)', "
                    + "which is not a declared slot")
            }
        }
        if m.steps.isEmpty {
            problems.append("steps: empty; a bundle runs at least one step")
        }
        var written: Set<String> = [State.x, State.y, State.cfgScale]
        for (pos, step) in m.steps.enumerated() {
            checkStep(m, pos, step, &written, &problems)
        }
        checkDecode(m, written, &problems)
        checkNumbers(m, &problems)
        if let steps = m.sampler?.steps, steps != m.steps.count {
            problems.append("sampler.steps is \(steps) but the manifest lists \(m.steps.count) steps")
        }
        return problems
    }

    /// Scalars reach the graphs as float32; slot shapes must be tensors a phone can hold.
    private static func checkNumbers(_ m: Manifest, _ problems: inout [String]) {
        for step in m.steps {
            for (name, value) in step.scalars.sorted(by: { $0.key < $1.key })
            where !value.isFinite || abs(value) > Double(Float.greatestFiniteMagnitude) {
                problems.append("steps[\(step.index)] scalar '\(name)' = \(value) is not a finite float32")
            }
        }
        for (name, slot) in m.slots.sorted(by: { $0.key < $1.key }) {
            let count = slot.shape.reduce(1.0) { $0 * Double($1) }
            if slot.shape.contains(where: { $0 < 0 }) || count > 0x1p34 {
                problems.append("slot '\(name)' has shape \(slot.shape), not a tensor a runtime can hold")
            }
        }
    }

    private static func checkStep(
        _ m: Manifest, _ pos: Int, _ step: StepSpec, _ written: inout Set<String>, _ problems: inout [String]
    ) {
        let at = "steps[\(pos)] (index \(step.index))"
        guard let method = m.methods[step.method] else {
            problems.append("\(at) uses method '\(step.method)', which is not in methods \(list(m.methods.keys))")
            return
        }
        for input in method.inputs {
            if m.isSlot(input.source) {
                if !written.contains(input.source) {
                    problems.append("\(at) reads slot '\(input.source)' (input '\(input.name)' of method "
                        + "'\(method.name)') before any earlier step writes it")
                }
            } else if step.scalars[input.source] == nil {
                problems.append("\(at) feeds input '\(input.name)' of method '\(method.name)' from "
                    + "'\(input.source)', which is neither a slot nor one of the step's scalars "
                    + list(step.scalars.keys))
            }
        }
        for o in method.outputs {
            written.insert(o.target)
        }
    }

    private static func checkDecode(_ m: Manifest, _ written: Set<String>, _ problems: inout [String]) {
        guard let decode = m.methods[m.decode] else {
            problems.append("decode names method '\(m.decode)', which is not in methods \(list(m.methods.keys))")
            return
        }
        if decode.inputs.isEmpty || decode.outputs.isEmpty {
            problems.append("decode method '\(decode.name)' must take the sample and return the image")
        }
        for input in decode.inputs where !m.isSlot(input.source) || !written.contains(input.source) {
            problems.append("decode method '\(decode.name)' input '\(input.name)' reads '\(input.source)', "
                + "which is not a slot holding a value after the last step")
        }
    }

    /// "[a, b]", sorted, as the Java core prints it.
    private static func list<S: Sequence>(_ names: S) -> String where S.Element == String {
        "[" + names.sorted().joined(separator: ", ") + "]"
    }
}
