@_spi(Fuzzing) import FlowCore

/// The decrypted request JSON and one flow's data handling: each NUL-separated part of the input (at most 8, so
/// one input can carry a whole journey: INIT, the screens, the confirm) is answered as the clear text of a request
/// to `.../flows/<flow>`, against the service's SQLite database (sessions, bookings and expenses are written).
///
/// Invariants: the status is 200, 400, 421 or 427 (a 500 or 503 is a bug here: the database is always
/// available); a 200 answer is `{"data": {...}}` (ping, error acknowledgement) or `{"screen": "...", "data": {...}}`;
/// a 427 answer is `{"error_msg": "..."}`; every log line is one well-formed line.
public func fuzzFlow(_ flow: String, _ bytes: [UInt8], service: FuzzService) {
    let json = bytes.count % 2 == 1
    let endpoint = json ? service.jsonEndpoint : service.textEndpoint
    for clearText in splitInput(bytes, separator: 0, limit: 8) {
        let (status, body) = endpoint.answerClearText(clearText, flow: flow, worker: service.worker)
        let text = String(decoding: body, as: UTF8.self)
        switch status {
        case 200:
            guard let answer = try? JSONParser.parse(body), let members = answer.objectValue,
                let data = members["data"], data.objectValue != nil
            else { fatalError("fuzz invariant broken: a 200 answer without a data object: \(text)") }
            if let screen = members["screen"] {
                require(members.count == 2 && !(screen.stringValue ?? "").isEmpty, "a screen answer is malformed: \(text)")
            } else {
                require(members.count == 1, "a data answer has other members: \(text)")
            }
        case 427:
            guard let answer = try? JSONParser.parse(body), answer.objectValue?.count == 1,
                !(answer["error_msg"]?.stringValue ?? "").isEmpty
            else { fatalError("fuzz invariant broken: a 427 answer is not {\"error_msg\": ...}: \(text)") }
        case 400, 421:
            require(!body.isEmpty && body.last == 0x0A, "an error answer without a message: \(status)")
        default:
            fatalError("fuzz invariant broken: status \(status) for a clear-text request: \(text)")
        }
        service.countRun()
    }
    service.checkLog(json: json)
}
