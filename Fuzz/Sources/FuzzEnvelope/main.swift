import FlowCore
import FuzzSupport

/// Envelope JSON: the raw POST body of a Flows request through the strict JSON parser and `Envelope.parse`.
///
/// Invariants: whatever parses is valid UTF-8 and at most `JSONParser.maxDepth` deep; its serialisation parses
/// back to the same value and serialises to the same bytes; an envelope re-serialised parses to the same envelope.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvelope(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    if let value = try? JSONParser.parse(bytes) {
        require(String(validating: bytes, as: UTF8.self) != nil, "accepted JSON that is not UTF-8")
        require(depth(value) <= JSONParser.maxDepth, "accepted nesting deeper than \(JSONParser.maxDepth)")
        let serialized = value.serialized
        let reparsed: JSONValue
        do {
            reparsed = try JSONParser.parse(serialized)
        } catch {
            fatalError("fuzz invariant broken: serialised JSON does not parse: \(error)")
        }
        require(reparsed == value, "serialised JSON parses to another value")
        require(reparsed.serialized == serialized, "serialisation is not canonical")
    }
    if let envelope = Envelope.parse(bytes) {
        require(Envelope.parse(envelope.body) == envelope, "a re-serialised envelope parses differently")
    }
    return 0
}

/// Nesting depth of arrays and objects (a scalar is 0).
private func depth(_ value: JSONValue) -> Int {
    switch value {
    case .array(let elements): return 1 + (elements.map(depth).max() ?? 0)
    case .object(let members): return 1 + (members.values.map(depth).max() ?? 0)
    default: return 0
    }
}

runLibFuzzer(fuzzEnvelope)
