import FlowCore
import FuzzSupport

/// Envelope JSON: the raw POST body of a Flows request through the strict JSON parser and `Envelope.parse`.
///
/// Invariants: whatever parses is valid UTF-8 and at most `JSONParser.maxDepth` deep; its serialisation parses
/// back to the same value and serialises to the same bytes; `Envelope.parse` (with its fast path for plain bodies)
/// gives exactly what the full parser gives; an envelope re-serialised parses to the same envelope.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvelope(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = fuzzBytes(start, count)
    let parsed = try? JSONParser.parse(bytes)
    if let value = parsed {
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
    let envelope = Envelope.parse(bytes)
    // Envelope.parse has a fast path for plain bodies; it must agree with the full parser on every body.
    var viaParser: Envelope?
    if let data = parsed?["encrypted_flow_data"]?.stringValue, let key = parsed?["encrypted_aes_key"]?.stringValue,
        let iv = parsed?["initial_vector"]?.stringValue
    {
        viaParser = Envelope(encryptedFlowData: data, encryptedAESKey: key, initialVector: iv)
    }
    require(envelope == viaParser, "Envelope.parse and the JSON parser disagree")
    if let envelope {
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
