extension Endpoint {
    /// `.../webhook`: Meta's verification handshake (GET) and webhook deliveries (POST).
    func webhook(_ request: EndpointRequest, worker: Worker, summary: inout RequestSummary) -> EndpointResponse {
        summary.route = "webhook"
        func fail(_ status: Int, _ message: String, _ headers: [(String, String)] = []) -> EndpointResponse {
            summary.reason = message
            return .text(status, message, extraHeaders: headers)
        }
        switch request.method {
        case "GET":
            return verificationHandshake(request, summary: &summary)
        case "POST":
            break
        default:
            return fail(405, "method \(request.method) not allowed", [("Allow", "GET, POST")])
        }
        if let (status, message) = signedBodyProblem(request, worker: worker, limit: configuration.webhook.maxBodyBytes,
                                                     limitSetting: "WEBHOOK_MAX_BODY_BYTES", signatureStatus: 401) {
            return fail(status, message)
        }
        let batch: WebhookBatch
        do {
            batch = try WebhookBatch.parse(request.body)
        } catch {
            return fail(400, "malformed webhook: \(error.description)")
        }
        guard let database = worker.database else {
            log.error("webhook needs a database: set DATABASE_URL=sqlite:/path/flows.db")
            return fail(500, "internal error")
        }
        let stored: WebhookStore.Stored
        do {
            stored = try WebhookStore.store(batch, database: database, now: clock(), flows: configuration.servedFlows,
                                           forward: configuration.webhook.callback != nil)
        } catch let error as DatabaseError where error.isUnavailable {
            log.error("storage unavailable", ["route": "webhook", "error": error.description])
            return fail(503, "storage unavailable, try again later")
        } catch let error as DatabaseError where error.outcome == .invalidInput {
            log.warning("a value the database cannot hold", ["route": "webhook", "error": error.description])
            return fail(400, "a value in the webhook cannot be stored")
        } catch {
            log.error("storing a webhook failed", ["error": String(describing: error)])
            return fail(500, "internal error")
        }
        for event in stored.newFlowEvents {
            log.warning("flows alert webhook", ["event": String(event.prefix(64))])
        }
        if batch.count > 0 {
            log.debug("webhook stored", ["items": String(batch.count), "new_messages": String(stored.messages),
                                         "new_statuses": String(stored.statuses),
                                         "confirmations": String(stored.confirmations)])
        }
        return Endpoint.json(200, ["received": .int(batch.count)])
    }

    /// `GET ...webhook?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`: 200 with `C` when `T` is
    /// `VERIFY_TOKEN`, else 403 (always 403 without a `VERIFY_TOKEN`).
    private func verificationHandshake(_ request: EndpointRequest, summary: inout RequestSummary) -> EndpointResponse {
        summary.action = "verify"
        func fail(_ status: Int, _ message: String) -> EndpointResponse {
            summary.reason = message
            return .text(status, message)
        }
        let query: QueryString
        let mode: String?, token: String?, challenge: String?
        do {
            query = try QueryString(request: request)
            mode = try query.single("hub.mode")
            token = try query.single("hub.verify_token")
            challenge = try query.single("hub.challenge")
        } catch {
            return fail(400, error.description)
        }
        guard let expected = configuration.webhook.verifyToken else {
            return fail(403, "verification refused: VERIFY_TOKEN is not configured")
        }
        guard mode == "subscribe", let token, Endpoint.secretsEqual(token, expected) else {
            return fail(403, "verification refused: wrong hub.mode or hub.verify_token")
        }
        guard let challenge, !challenge.isEmpty, challenge.utf8.count <= 512 else {
            return fail(400, "hub.challenge missing or longer than 512 bytes")
        }
        return EndpointResponse(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8")],
                                body: Array(challenge.utf8))
    }

    /// Compares two secrets in time independent of where they differ and of the expected one's length.
    static func secretsEqual(_ given: String, _ expected: String) -> Bool {
        let key = Digest.randomBytes(32)
        return Digest.constantTimeEqual(Digest.hmacSHA256(key: key, message: Array(given.utf8)),
                                        Digest.hmacSHA256(key: key, message: Array(expected.utf8)))
    }

    /// A JSON answer.
    static func json(_ status: Int, _ value: JSONValue) -> EndpointResponse {
        EndpointResponse(status: status, headers: [("Content-Type", "application/json")], body: value.serialized)
    }
}
