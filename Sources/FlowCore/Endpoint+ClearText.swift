/// The clear-text half of a Flows request, for the fuzz targets (`Fuzz/`): a fuzzer cannot forge AES-GCM tags, so
/// it hands over what a successful decryption would have produced and gets back what the client would decrypt.
@_spi(Fuzzing)
extension Endpoint {
    /// The AES key and IV the clear-text answers are sealed and opened with (any fixed pair does).
    private static let clearTextKey = [UInt8](repeating: 0x5A, count: 16)
    private static let clearTextIV = [UInt8](repeating: 0xA5, count: 16)

    /// Answers `clearText` as if it had just been decrypted from a request to `.../flows/<flow>`: the same checks
    /// and flow code as `handle` runs after decryption (version, action, ping, error notifications, flow token
    /// signature, the flow itself, with `worker`'s database), without the envelope, signature and RSA steps.
    ///
    /// - Returns: the HTTP status and, for the encrypted answers (200, 427), the clear-text JSON the client would
    ///   decrypt; for the others, the plain-text body. Clear text that is not a UTF-8 JSON object gets 421, as it
    ///   does after a real decryption; an unknown flow gets 404.
    public func answerClearText(_ clearText: [UInt8], flow name: String, worker: Worker)
        -> (status: Int, body: [UInt8])
    {
        guard let flow = configuration.flows[name] else { return (404, Array("unknown flow\n".utf8)) }
        guard let json = try? JSONParser.parse(clearText), json.objectValue != nil else {
            return (421, Array("the decrypted request is not a UTF-8 JSON object\n".utf8))
        }
        let decrypted = DecryptedRequest(json: json, clearText: clearText, aesKey: Endpoint.clearTextKey,
                                         iv: Endpoint.clearTextIV, keyIndex: 0)
        var summary = RequestSummary()
        let response = answer(decrypted, flow: flow, worker: worker, summary: &summary)
        guard response.status == 200 || response.status == 427 else { return (response.status, response.body) }
        do {
            let clear = try FlowCrypto.openAnswer(String(decoding: response.body, as: UTF8.self),
                                                  key: Endpoint.clearTextKey, requestIV: Endpoint.clearTextIV)
            return (response.status, clear)
        } catch {
            // Every 200 and 427 answer is sealed; one that does not open is a bug the caller should see.
            return (500, Array("the answer does not open: \(error)\n".utf8))
        }
    }
}
