/// Why a TextInput `pattern` is refused: what is not supported, and at which character (counted from 1).
struct FormPatternError: Error, Equatable, CustomStringConvertible {
    /// The reason, e.g. `lookahead (?= is not supported (character 4)`.
    let description: String
}

/// A TextInput `pattern`: a JavaScript-style regular expression (the dialect Meta documents), compiled once into a
/// Thompson NFA and matched against the whole text, scalar by scalar, in time linear in the text whatever the
/// pattern (no backtracking).
///
/// The subset: literals (any Unicode scalar), `.` (anything but a line terminator), `\d \D \w \W \s \S` with
/// JavaScript's ASCII meaning of `\d` and `\w`, `\t \n \r \f \v \xHH \uHHHH`, escaped punctuation, bracket classes
/// with ranges and negation, groups `( )`, `(?: )` and `(?<name> )` (nothing is captured), alternation, the
/// quantifiers `* + ? {n} {n,} {n,m}` (lazy forms too: a whole match has the same answer) and `^` / `$` where they
/// only say "whole text". Refused with the reason: backreferences, lookaround, `\b`, `\p{…}`, inline flags, and a
/// counted repetition whose automaton would pass ``FormPattern/stateLimit`` states. Not Swift's regexes: the string
/// processing library costs about 0.6 MiB of resident memory per process as soon as it parses one pattern.
final class FormPattern: Sendable {
    /// The most NFA states a pattern may compile to (each counted copy of a repeated part adds its states).
    static let stateLimit = 4_096

    /// The pattern as written.
    let source: String
    private let states: [State]
    private let start: Int32

    /// Compiles `source`, or throws what is not supported in it.
    init(_ source: String) throws(FormPatternError) {
        var parser = Parser(Array(source.unicodeScalars))
        let node = try parser.parse()
        var compiler = Compiler()
        compiler.states.append(.match)
        let start = try compiler.compile(node, next: 0)
        self.source = source
        self.states = compiler.states
        self.start = start
    }

    /// True when the whole of `text` matches.
    func matches(_ text: String) -> Bool {
        let count = states.count
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: 4 * count) { buffer in
            buffer.initialize(repeating: 0)
            // `marks[s]` is the last step state `s` was added in; `current`/`following` hold the scalar and match
            // states reached before and after the scalar read; `pending` is the work stack of the epsilon closure.
            let marks = UnsafeMutableBufferPointer(rebasing: buffer[0 ..< count])
            var current = UnsafeMutableBufferPointer(rebasing: buffer[count ..< 2 * count])
            var following = UnsafeMutableBufferPointer(rebasing: buffer[2 * count ..< 3 * count])
            let pending = UnsafeMutableBufferPointer(rebasing: buffer[3 * count ..< 4 * count])
            var step: Int32 = 1
            var currentCount = add(start, step: step, to: current, count: 0, marks: marks, pending: pending)
            for scalar in text.unicodeScalars {
                step += 1
                var followingCount = 0
                for index in 0 ..< currentCount {
                    if case .scalar(let set, let next) = states[Int(current[index])], set.contains(scalar.value) {
                        followingCount = add(next, step: step, to: following, count: followingCount, marks: marks,
                                             pending: pending)
                    }
                }
                if followingCount == 0 { return false }
                swap(&current, &following)
                currentCount = followingCount
            }
            return current[0 ..< currentCount].contains(0)
        }
    }

    /// Adds `state` and the states reachable from it without reading a scalar to `list` (after its first `count`
    /// entries), skipping those already added in `step`; returns the new count.
    private func add(_ state: Int32, step: Int32, to list: UnsafeMutableBufferPointer<Int32>, count: Int,
                     marks: UnsafeMutableBufferPointer<Int32>, pending: UnsafeMutableBufferPointer<Int32>) -> Int {
        var count = count
        var top = 0
        func push(_ state: Int32) {
            guard marks[Int(state)] != step else { return }
            marks[Int(state)] = step
            pending[top] = state
            top += 1
        }
        push(state)
        while top > 0 {
            top -= 1
            let state = pending[top]
            if case .split(let first, let second) = states[Int(state)] {
                push(first)
                push(second)
            } else {
                list[count] = state
                count += 1
            }
        }
        return count
    }
}

// MARK: - Scalar sets

/// A set of Unicode scalars as sorted, disjoint, non-adjacent ranges of scalar values.
struct ScalarSet: Sendable, Equatable {
    private(set) var ranges: [ClosedRange<UInt32>]

    init(_ ranges: [ClosedRange<UInt32>]) {
        var merged: [ClosedRange<UInt32>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, range.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound ... max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        self.ranges = merged
    }

    init(_ scalar: Unicode.Scalar) { ranges = [scalar.value ... scalar.value] }

    /// Every scalar value not in this set (surrogate code points included: they never occur in a text).
    var inverted: ScalarSet {
        var result: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for range in ranges {
            if range.lowerBound > next { result.append(next ... range.lowerBound - 1) }
            next = range.upperBound &+ 1
        }
        if next <= 0x10FFFF { result.append(next ... 0x10FFFF) }
        return ScalarSet(result)
    }

    func union(_ other: ScalarSet) -> ScalarSet { ScalarSet(ranges + other.ranges) }

    func contains(_ value: UInt32) -> Bool {
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].upperBound < value {
                low = middle + 1
            } else if ranges[middle].lowerBound > value {
                high = middle
            } else {
                return true
            }
        }
        return false
    }

    /// `\d`: ASCII digits, as in JavaScript.
    static let digit = ScalarSet([0x30 ... 0x39])
    /// `\w`: ASCII letters, digits and `_`, as in JavaScript.
    static let word = ScalarSet([0x30 ... 0x39, 0x41 ... 0x5A, 0x5F ... 0x5F, 0x61 ... 0x7A])
    /// `\s`: JavaScript's white space and line terminators.
    static let space = ScalarSet([0x09 ... 0x0D, 0x20 ... 0x20, 0xA0 ... 0xA0, 0x1680 ... 0x1680, 0x2000 ... 0x200A,
                                  0x2028 ... 0x2029, 0x202F ... 0x202F, 0x205F ... 0x205F, 0x3000 ... 0x3000,
                                  0xFEFF ... 0xFEFF])
    /// `.`: anything but JavaScript's line terminators.
    static let dot = ScalarSet([0x0A ... 0x0A, 0x0D ... 0x0D, 0x2028 ... 0x2029]).inverted
}

// MARK: - Syntax tree and parser

/// A parsed pattern. Groups are only structure: nothing is captured.
private indirect enum Node {
    /// Matches the empty text.
    case empty
    /// One scalar of the set.
    case scalar(ScalarSet)
    case sequence([Node])
    case alternatives([Node])
    /// `min` to `max` (nil: any number of) repetitions; never of `.empty`.
    case repetition(Node, min: Int, max: Int?)

    /// False when the node reads no scalar whatever the text (then repeating it is `.empty`).
    var readsScalars: Bool {
        switch self {
        case .empty: return false
        case .scalar: return true
        case .sequence(let nodes), .alternatives(let nodes): return nodes.contains { $0.readsScalars }
        case .repetition(let node, _, let max): return max != 0 && node.readsScalars
        }
    }
}

/// A recursive-descent parser of the supported subset; every refusal names the construct and its position.
private struct Parser {
    /// The deepest nesting of groups accepted (the parser and the compiler recurse once per level).
    static let depthLimit = 64
    /// The largest count accepted in `{n,m}`.
    static let countLimit = 1_000

    private let scalars: [Unicode.Scalar]
    private var position = 0
    private var depth = 0

    init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

    private var peek: Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }

    private func fail(_ reason: String, at index: Int? = nil) -> FormPatternError {
        FormPatternError(description: "\(reason) (character \((index ?? position) + 1))")
    }

    mutating func parse() throws(FormPatternError) -> Node {
        let node = try alternatives()
        if position < scalars.count { throw fail("unbalanced )") }
        return node
    }

    /// `a|b|…` up to an unmatched `)` or the end.
    private mutating func alternatives() throws(FormPatternError) -> Node {
        var branches = [try sequence()]
        while peek == "|" {
            position += 1
            branches.append(try sequence())
        }
        return branches.count == 1 ? branches[0] : .alternatives(branches)
    }

    /// The atoms of one alternative, each with its quantifier.
    private mutating func sequence() throws(FormPatternError) -> Node {
        var nodes: [Node] = []
        let atDepthZero = depth == 0
        if peek == "^" {
            guard atDepthZero else { throw fail("^ is only supported at the start of the pattern") }
            position += 1
        }
        while let scalar = peek, scalar != "|", scalar != ")" {
            if scalar == "$" {
                position += 1
                guard atDepthZero, peek == nil || peek == "|" else {
                    throw fail("$ is only supported at the end of the pattern", at: position - 1)
                }
                break
            }
            if scalar == "^" { throw fail("^ is only supported at the start of the pattern") }
            let atom = try atom()
            nodes.append(try quantified(atom))
        }
        return nodes.count == 1 ? nodes[0] : nodes.isEmpty ? .empty : .sequence(nodes)
    }

    private mutating func atom() throws(FormPatternError) -> Node {
        let start = position
        let scalar = scalars[position]
        position += 1
        switch scalar {
        case ".": return .scalar(.dot)
        case "(": return try group(start: start)
        case "[": return .scalar(try bracket(start: start))
        case "\\": return .scalar(try escape().set)
        case "*", "+", "?": throw fail("nothing to repeat before \(scalar)", at: start)
        case "{":
            if quantifierAhead(from: start) { throw fail("nothing to repeat before {", at: start) }
            throw fail("a { that does not start {n}, {n,} or {n,m}: write \\{", at: start)
        case "}", "]": throw fail("an unmatched \(scalar): write \\\(scalar)", at: start)
        default: return .scalar(ScalarSet(scalar))
        }
    }

    /// After `(`: the group's alternatives and its `)`.
    private mutating func group(start: Int) throws(FormPatternError) -> Node {
        if peek == "?" {
            let next = position + 1 < scalars.count ? scalars[position + 1] : nil
            let after = position + 2 < scalars.count ? scalars[position + 2] : nil
            switch (next, after) {
            case (":", _):
                position += 2
            case ("=", _), ("!", _):
                throw fail("lookahead (?\(next!) is not supported", at: start)
            case ("<", "="), ("<", "!"):
                throw fail("lookbehind (?<\(after!) is not supported", at: start)
            case ("<", _):
                position += 2
                let nameStart = position
                while let scalar = peek, ScalarSet.word.contains(scalar.value) { position += 1 }
                guard position > nameStart, peek == ">" else { throw fail("a malformed group name", at: start) }
                position += 1
            default:
                throw fail("group syntax (? other than (?: and (?<name> is not supported (no inline flags)", at: start)
            }
        }
        depth += 1
        guard depth <= Self.depthLimit else { throw fail("groups nested more than \(Self.depthLimit) deep", at: start) }
        let node = try alternatives()
        depth -= 1
        guard peek == ")" else { throw fail("an unclosed (", at: start) }
        position += 1
        return node
    }

    /// After `[`: the class up to its `]`.
    private mutating func bracket(start: Int) throws(FormPatternError) -> ScalarSet {
        let negated = peek == "^"
        if negated { position += 1 }
        var set = ScalarSet([])
        var first = true
        while true {
            guard let scalar = peek else { throw fail("an unclosed [", at: start) }
            if scalar == "]" {
                if first { throw fail("an empty class [] or [^]: write \\] for a ]", at: start) }
                position += 1
                break
            }
            first = false
            let itemStart = position
            let low = try bracketItem()
            if peek == "-", position + 1 < scalars.count, scalars[position + 1] != "]" {
                position += 1
                guard case .scalar(let low) = low, case .scalar(let high) = try bracketItem() else {
                    throw fail("a range in a class cannot start or end with a class escape", at: itemStart)
                }
                guard low.value <= high.value else {
                    throw fail("the range \(low)-\(high) is out of order", at: itemStart)
                }
                set = set.union(ScalarSet([low.value ... high.value]))
            } else {
                set = set.union(low.set)
            }
        }
        return negated ? set.inverted : set
    }

    /// What an escape or a class member stands for: one scalar (which may bound a range) or a class like `\d`.
    private enum Member {
        case scalar(Unicode.Scalar)
        case set(ScalarSet)

        var set: ScalarSet {
            switch self {
            case .scalar(let scalar): return ScalarSet(scalar)
            case .set(let set): return set
            }
        }
    }

    /// One member of a class.
    private mutating func bracketItem() throws(FormPatternError) -> Member {
        let scalar = scalars[position]
        position += 1
        switch scalar {
        case "\\": return try escape()
        case "[": throw fail("a [ inside a class: write \\[", at: position - 1)
        default: return .scalar(scalar)
        }
    }

    /// After `\`: the escaped scalar or class.
    private mutating func escape() throws(FormPatternError) -> Member {
        let start = position - 1
        guard let scalar = peek else { throw fail("a \\ at the end of the pattern", at: start) }
        position += 1
        switch scalar {
        case "d": return .set(.digit)
        case "D": return .set(ScalarSet.digit.inverted)
        case "w": return .set(.word)
        case "W": return .set(ScalarSet.word.inverted)
        case "s": return .set(.space)
        case "S": return .set(ScalarSet.space.inverted)
        case "t": return .scalar("\t")
        case "n": return .scalar("\n")
        case "r": return .scalar("\r")
        case "f": return .scalar("\u{0C}")
        case "v": return .scalar("\u{0B}")
        case "x": return .scalar(try hexadecimal(digits: 2, start: start))
        case "u": return .scalar(try hexadecimal(digits: 4, start: start))
        case "b", "B": throw fail("\\b and \\B (word boundary, backspace) are not supported", at: start)
        case "1" ... "9", "k": throw fail("backreferences are not supported", at: start)
        case "p", "P": throw fail("Unicode property escapes \\\(scalar){…} are not supported", at: start)
        case "a" ... "z", "A" ... "Z", "0" ... "9": throw fail("the escape \\\(scalar) is not supported", at: start)
        default: return .scalar(scalar)  // escaped punctuation, e.g. \. \- \/
        }
    }

    /// `digits` hexadecimal digits after `\x` or `\u`, as a scalar.
    private mutating func hexadecimal(digits: Int, start: Int) throws(FormPatternError) -> Unicode.Scalar {
        var value: UInt32 = 0
        for _ in 0 ..< digits {
            guard let scalar = peek, let digit = hexValue(scalar) else {
                throw fail("\\\(scalars[start + 1]) needs \(digits) hexadecimal digits", at: start)
            }
            value = value * 16 + digit
            position += 1
        }
        guard let result = Unicode.Scalar(value) else {
            throw fail("\\u\(String(value, radix: 16, uppercase: true)) is a surrogate, not a scalar", at: start)
        }
        return result
    }

    private func hexValue(_ scalar: Unicode.Scalar) -> UInt32? {
        switch scalar.value {
        case 0x30 ... 0x39: return scalar.value - 0x30
        case 0x41 ... 0x46: return scalar.value - 0x41 + 10
        case 0x61 ... 0x66: return scalar.value - 0x61 + 10
        default: return nil
        }
    }

    /// True when `{n}`, `{n,}` or `{n,m}` starts at `index`.
    private func quantifierAhead(from index: Int) -> Bool {
        var probe = index
        return (try? braces(at: &probe)) != nil
    }

    /// Parses `{n}`, `{n,}` or `{n,m}` at `index` (moving it past the `}`); nil when there is none there.
    private func braces(at index: inout Int) throws(FormPatternError) -> (Int, Int?)? {
        let start = index
        var probe = index + 1
        func number() -> Int? {
            var value: Int?
            while probe < scalars.count, ("0" ... "9").contains(scalars[probe]) {
                value = min((value ?? 0) * 10 + Int(scalars[probe].value - 0x30), Int(Int32.max))
                probe += 1
            }
            return value
        }
        guard let low = number() else { return nil }
        var high: Int? = low
        if probe < scalars.count, scalars[probe] == "," {
            probe += 1
            high = number()
        }
        guard probe < scalars.count, scalars[probe] == "}" else { return nil }
        index = probe + 1
        if let high, high < low { throw fail("the counts of {\(low),\(high)} are out of order", at: start) }
        if max(low, high ?? 0) > Self.countLimit { throw fail("a count above \(Self.countLimit)", at: start) }
        return (low, high)
    }

    /// `atom` with the quantifier that follows it, if any (and the `?` of a lazy one).
    private mutating func quantified(_ atom: Node) throws(FormPatternError) -> Node {
        let bounds: (Int, Int?)
        switch peek {
        case "*": bounds = (0, nil); position += 1
        case "+": bounds = (1, nil); position += 1
        case "?": bounds = (0, 1); position += 1
        case "{":
            var index = position
            guard let found = try braces(at: &index) else {
                throw fail("a { that does not start {n}, {n,} or {n,m}: write \\{")
            }
            bounds = found
            position = index
        default: return atom
        }
        if peek == "?" { position += 1 }  // lazy: the same whole matches
        if let next = peek,
           next == "*" || next == "+" || next == "?" || next == "{" && quantifierAhead(from: position) {
            throw fail("a quantifier cannot follow another (no possessive forms)", at: position)
        }
        guard atom.readsScalars, bounds.1 != 0 else { return .empty }
        return .repetition(atom, min: bounds.0, max: bounds.1)
    }
}

// MARK: - NFA

/// A state of the automaton; state 0 is the match.
private enum State: Sendable {
    case match
    /// Reads one scalar of the set, then goes to `next`.
    case scalar(ScalarSet, next: Int32)
    /// Goes to both without reading.
    case split(Int32, Int32)
}

/// Builds the automaton back to front: each node is compiled knowing the state that follows it.
private struct Compiler {
    var states: [State] = []

    private mutating func append(_ state: State) throws(FormPatternError) -> Int32 {
        guard states.count < FormPattern.stateLimit else {
            throw FormPatternError(description: "the pattern needs more than \(FormPattern.stateLimit) states "
                                    + "(counted repetitions {n,m} multiply the size of what they repeat)")
        }
        states.append(state)
        return Int32(states.count - 1)
    }

    /// The first state of `node`, which continues to `next`.
    mutating func compile(_ node: Node, next: Int32) throws(FormPatternError) -> Int32 {
        switch node {
        case .empty:
            return next
        case .scalar(let set):
            return try append(.scalar(set, next: next))
        case .sequence(let nodes):
            var first = next
            for node in nodes.reversed() { first = try compile(node, next: first) }
            return first
        case .alternatives(let nodes):
            var first = try compile(nodes[nodes.count - 1], next: next)
            for node in nodes.dropLast().reversed() { first = try append(.split(try compile(node, next: next), first)) }
            return first
        case .repetition(let node, let min, let max):
            var first = next
            if let max {
                // (x(x(x)?)?)?: each optional copy either reads x and goes on to the next, or leaves.
                for _ in min ..< max { first = try append(.split(try compile(node, next: first), next)) }
            } else {
                let loop = try append(.split(0, next))
                states[Int(loop)] = .split(try compile(node, next: loop), next)
                first = loop
            }
            for _ in 0 ..< min { first = try compile(node, next: first) }
            return first
        }
    }
}
