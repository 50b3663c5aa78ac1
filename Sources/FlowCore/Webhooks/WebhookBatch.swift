/// One message from a messages webhook (`entry[].changes[].value.messages[]`).
public struct WebhookMessage: Sendable, Equatable {
    /// Meta's message id (`wamid...`): stored once however often it is delivered.
    public let id: String
    /// The sender's number.
    public let from: String
    /// When it was sent, seconds since the epoch.
    public let timestamp: Int64
    /// `text`, `interactive`, `image`, ...
    public let type: String
    /// The text of a text message, else a short summary such as `[image] caption`.
    public let text: String
    /// For an `nfm_reply`: the completed flow's token from `response_json`.
    public let flowToken: String?
    /// For an `nfm_reply`: `response_json` (the SUCCESS params), canonical JSON text.
    public let responseJSON: String?
    /// The whole message object, canonical JSON text.
    public let raw: String
}

/// One status update (`sent`, `delivered`, `read`, `failed`) of a message the business sent.
public struct WebhookStatus: Sendable, Equatable {
    /// The message id the status is about.
    public let messageID: String
    /// The status name.
    public let status: String
    /// When, seconds since the epoch.
    public let timestamp: Int64
    /// The recipient's number, when given.
    public let recipient: String?
    /// The whole status object, canonical JSON text.
    public let raw: String
}

/// One Flows alert (`field: "flows"`): `FLOW_STATUS_CHANGE`, `ENDPOINT_ERROR_RATE`, ...
public struct WebhookFlowEvent: Sendable, Equatable {
    /// The WhatsApp Business Account id of the entry.
    public let entryID: String?
    /// The event name.
    public let event: String
    /// The flow id, when given.
    public let flowID: String?
    /// The whole `value` object, canonical JSON text.
    public let raw: String
}

/// A webhook body, checked and parsed completely before anything is stored.
public struct WebhookBatch: Sendable, Equatable {
    /// Every message, in body order.
    public var messages: [WebhookMessage] = []
    /// Every status update, in body order.
    public var statuses: [WebhookStatus] = []
    /// Every Flows alert, in body order.
    public var flowEvents: [WebhookFlowEvent] = []

    /// How many items the body held.
    public var count: Int { messages.count + statuses.count + flowEvents.count }

    /// Why a body was refused, with the JSON path of the offending member.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        /// Plain words, e.g. `entry[0].changes[1].value.messages[0].id: expected a non-empty string`.
        public let description: String
    }

    /// Parses a webhook body. Changes with fields other than `messages` and `flows` are accepted and ignored.
    /// - Throws: `Malformed` when the body is not JSON or not shaped like a WhatsApp webhook.
    public static func parse(_ body: [UInt8]) throws(Malformed) -> WebhookBatch {
        let json: JSONValue
        do {
            json = try JSONParser.parse(body)
        } catch {
            throw Malformed(description: "the body is not JSON: \(error.description)")
        }
        var batch = WebhookBatch()
        let root = try object(json, "body")
        if let kind = root["object"] { _ = try string(kind, "object") }
        let entries = try array(root["entry"], "entry")
        for (e, entryValue) in entries.enumerated() {
            let entryPath = "entry[\(e)]"
            let entry = try object(entryValue, entryPath)
            let entryID = try entry["id"].map { v throws(Malformed) in try identifier(v, entryPath + ".id") }
            let changes = try array(entry["changes"], entryPath + ".changes")
            for (c, changeValue) in changes.enumerated() {
                let changePath = "\(entryPath).changes[\(c)]"
                let change = try object(changeValue, changePath)
                let field = try string(change["field"], changePath + ".field")
                let value = try object(change["value"], changePath + ".value")
                switch field {
                case "messages":
                    try batch.addMessages(value, path: changePath + ".value")
                case "flows":
                    let event = try string(value["event"], changePath + ".value.event")
                    let flowID = try value["flow_id"].map { v throws(Malformed) in
                        try identifier(v, changePath + ".value.flow_id")
                    }
                    batch.flowEvents.append(WebhookFlowEvent(entryID: entryID, event: event, flowID: flowID,
                                                             raw: JSONValue.object(value).text))
                default:
                    continue
                }
            }
        }
        return batch
    }

    private mutating func addMessages(_ value: [String: JSONValue], path: String) throws(Malformed) {
        if let list = value["messages"] {
            for (m, messageValue) in try WebhookBatch.array(list, path + ".messages").enumerated() {
                messages.append(try WebhookBatch.message(messageValue, path: "\(path).messages[\(m)]"))
            }
        }
        if let list = value["statuses"] {
            for (s, statusValue) in try WebhookBatch.array(list, path + ".statuses").enumerated() {
                let statusPath = "\(path).statuses[\(s)]"
                let status = try WebhookBatch.object(statusValue, statusPath)
                let recipient = try status["recipient_id"].map { v throws(Malformed) in
                    try WebhookBatch.string(v, statusPath + ".recipient_id")
                }
                statuses.append(WebhookStatus(
                    messageID: try WebhookBatch.string(status["id"], statusPath + ".id"),
                    status: try WebhookBatch.string(status["status"], statusPath + ".status"),
                    timestamp: try WebhookBatch.epoch(status["timestamp"], statusPath + ".timestamp"),
                    recipient: recipient, raw: statusValue.text))
            }
        }
    }

    private static func message(_ value: JSONValue, path: String) throws(Malformed) -> WebhookMessage {
        let message = try object(value, path)
        let id = try string(message["id"], path + ".id")
        let from = try string(message["from"], path + ".from")
        let timestamp = try epoch(message["timestamp"], path + ".timestamp")
        let type = try string(message["type"], path + ".type")
        var flowToken: String?
        var responseJSON: String?
        let text: String
        switch type {
        case "text":
            let content = try object(message["text"], path + ".text")
            guard let body = content["body"]?.stringValue else {
                throw Malformed(description: "\(path).text.body: expected a string")
            }
            text = body
        case "interactive":
            let interactive = try object(message["interactive"], path + ".interactive")
            let kind = try string(interactive["type"], path + ".interactive.type")
            if kind == "nfm_reply" {
                let reply = try object(interactive["nfm_reply"], path + ".interactive.nfm_reply")
                let responsePath = path + ".interactive.nfm_reply.response_json"
                let responseText = try string(reply["response_json"], responsePath)
                guard let parsed = try? JSONParser.parse(responseText), let params = parsed.objectValue else {
                    throw Malformed(description: "\(responsePath): expected a JSON object in a string")
                }
                flowToken = params["flow_token"]?.stringValue
                if let token = flowToken, !token.isEmpty, let problem = FlowToken.problem(token) {
                    throw Malformed(description: "\(responsePath): \(problem)")
                }
                responseJSON = parsed.text
                text = "[flow reply] " + (reply["body"]?.stringValue ?? reply["name"]?.stringValue ?? "")
            } else {
                let title = interactive[kind]?["title"]?.stringValue ?? ""
                text = "[\(kind)] \(title)"
            }
        case "button":
            text = "[button] " + (message["button"]?["text"]?.stringValue ?? "")
        default:
            text = "[\(type)] " + (message[type]?["caption"]?.stringValue ?? "")
        }
        return WebhookMessage(id: id, from: from, timestamp: timestamp, type: type,
                              text: text.hasSuffix(" ") ? String(text.dropLast()) : text,
                              flowToken: flowToken, responseJSON: responseJSON, raw: value.text)
    }

    private static func object(_ value: JSONValue?, _ path: String) throws(Malformed) -> [String: JSONValue] {
        guard let object = value?.objectValue else { throw Malformed(description: "\(path): expected an object") }
        return object
    }

    private static func array(_ value: JSONValue?, _ path: String) throws(Malformed) -> [JSONValue] {
        guard let array = value?.arrayValue else { throw Malformed(description: "\(path): expected an array") }
        return array
    }

    /// A name, id or number: at most 4096 bytes, without U+0000 (ids are keys: one cut at a NUL would collide).
    private static func string(_ value: JSONValue?, _ path: String) throws(Malformed) -> String {
        guard let text = value?.stringValue, !text.isEmpty, text.utf8.count <= 4096 else {
            throw Malformed(description: "\(path): expected a non-empty string")
        }
        if text.containsNUL { throw Malformed(description: "\(path): contains a NUL character (U+0000)") }
        return text
    }

    /// An id Meta sends as a string (numbers tolerated).
    private static func identifier(_ value: JSONValue, _ path: String) throws(Malformed) -> String {
        if case .number(let n) = value { return n }
        return try string(value, path)
    }

    /// Epoch seconds written as a string of digits (Meta's form) or a whole number.
    private static func epoch(_ value: JSONValue?, _ path: String) throws(Malformed) -> Int64 {
        let text: String?
        switch value {
        case .string(let s)?: text = s
        case .number(let n)?: text = n
        default: text = nil
        }
        guard let text, text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let seconds = Int64(text)
        else { throw Malformed(description: "\(path): expected epoch seconds") }
        return seconds
    }
}
