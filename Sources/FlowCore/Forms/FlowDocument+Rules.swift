extension FlowDocument {
    /// Meta's routing, reference and action rules (see `FlowJSONRules`).
    mutating func checkMetaRules() {
        checkRouting()
        for s in screens.indices { checkScreen(s) }
    }

    /// True when an edge leads from `from` to `to` (directly or not).
    private func reaches(_ from: Int, _ to: Int) -> Bool {
        var seen: Set<Int> = []
        var stack = [from]
        while let next = stack.popLast() {
            for target in edges[next] where seen.insert(target).inserted {
                if target == to { return true }
                stack.append(target)
            }
        }
        return false
    }

    private mutating func checkRouting() {
        var cyclic = false
        for from in screens.indices {
            for (i, to) in edges[from].enumerated() where reaches(to, from) {
                problem(jsonPointer(jsonPointer("/routing_model", screens[from].id), i),
                        "\(screens[from].id) -> \(screens[to].id) closes a cycle: list forward edges only (the back "
                            + "button already returns)")
                cyclic = true
            }
        }
        let targets = Set(edges.joined())
        let entries = screens.indices.filter { !targets.contains($0) }
        guard entries.count == 1 else {
            problem("/routing_model", "needs exactly one entry screen (no edge points to it), found "
                + (entries.isEmpty ? "none" : entries.map { screens[$0].id }.joined(separator: ", ")))
            return
        }
        entry = entries[0]
        guard !cyclic else { return }
        // Every route from the entry screen reaches a terminal screen.
        var stack = [(entry, [screens[entry].id])]
        while let (s, path) = stack.popLast() {
            if screens[s].terminal { continue }
            if edges[s].isEmpty {
                problem(jsonPointer("/routing_model", screens[s].id), "the route \(path.joined(separator: " -> ")) "
                    + "ends at \(screens[s].id), which is not terminal")
            }
            for next in edges[s] { stack.append((next, path + [screens[next].id])) }
        }
    }

    private mutating func checkScreen(_ s: Int) {
        let screen = screens[s]
        if screen.terminal, screen.footerPointer == nil {
            problem(screen.pointer, "a terminal screen needs a Footer")
        }
        for reference in screen.references {
            let parts = reference.expression.split(separator: ".", omittingEmptySubsequences: false).map {
                String($0.prefix { $0 != "[" && $0 != " " && $0 != "}" })
            }
            switch parts.first {
            case "data":
                if parts.count < 2 || !screen.declares(parts[1]) {
                    problem(reference.pointer, "${\(reference.expression)} is not declared in \(screen.id)'s data")
                }
            case "form":
                if parts.count < 2 || !screen.names.contains(parts[1]) {
                    problem(reference.pointer, "${\(reference.expression)} names no component of \(screen.id)")
                }
            case "screen":
                guard parts.count >= 4, let other = index[parts[1]].map({ screens[$0] }),
                    parts[2] == "data" && other.declares(parts[3])
                        || parts[2] == "form" && other.names.contains(parts[3])
                else {
                    problem(reference.pointer, "${\(reference.expression)} names no declared field or component")
                    continue
                }
            default:
                if !reference.expression.containsBytes("data.") && !reference.expression.containsBytes("form.") {
                    problem(reference.pointer, "${\(reference.expression)}: expected data, form or screen")
                }
            }
        }
        for action in screen.actions {
            switch action.name {
            case "navigate":
                guard let name = action.next, let target = index[name] else {
                    problem(jsonPointer(jsonPointer(action.pointer, "next"), "name"), "names no screen")
                    continue
                }
                guard edges[s].contains(target) else {
                    problem(jsonPointer(jsonPointer(action.pointer, "next"), "name"),
                            "\(screen.id) -> \(name) is not an edge of routing_model")
                    continue
                }
                let declared = screens[target].declared.map(\.name)
                let sent = action.payload.map(\.key)
                let payloadPointer = jsonPointer(action.pointer, "payload")
                for key in sent where !declared.contains(key) {
                    problem(jsonPointer(payloadPointer, key), "\(name) does not declare \(key) in its data")
                }
                for key in declared where !sent.contains(key) {
                    problem(payloadPointer, "leaves out \(key), which \(name) declares (every declared field is "
                        + "required)")
                }
            case "complete":
                if !screen.terminal {
                    problem(jsonPointer(action.pointer, "name"), "`complete` is only allowed on a terminal screen")
                }
            case "data_exchange", "update_data", "open_url":
                break
            default:
                problem(jsonPointer(action.pointer, "name"), "unknown action \(action.name)")
            }
        }
    }
}
