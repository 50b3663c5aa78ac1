@testable import FlowCore
import Testing

@Suite("Callback outbox")
struct CallbackOutboxTests {
    @Test func callbackURLParsing() throws {
        let plain = try CallbackTarget(url: "http://127.0.0.1:8081/hooks/flows?x=1")
        #expect(plain.host == "127.0.0.1" && plain.port == 8081 && plain.path == "/hooks/flows?x=1")
        let bare = try CallbackTarget(url: "http://crm.internal")
        #expect(bare.port == 80 && bare.path == "/" && !bare.secure)
        let tls = try CallbackTarget(url: "https://crm.example.com/x")
        #expect(tls.secure && tls.port == 443 && tls.host == "crm.example.com" && tls.path == "/x")
        for bad in ["ftp://x", "http://:80/", "http://user@host/", "http://h:0/",
                    "http://h:99999/"] {
            #expect(throws: ConfigError.self, "\(bad)") { try CallbackTarget(url: bad) }
        }
    }

    @Test(arguments: Engine.all) func claimLeaseRetryAndDelivery(engine: Engine) throws {
        let store = try TestStore(engine, directory: temporaryDirectory())
        let database = try store.open(migrations: WebhookStore.migrations)
        defer { database.close() }
        let batch = try WebhookBatch.parse(Array("""
            {"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
             "messages":[{"from":"1555","id":"wamid.1","timestamp":"100","type":"interactive","interactive":{
             "type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\\"flow_token\\":\\"t1\\"}"}}}]}}]}]}
            """.utf8))
        _ = try WebhookStore.store(batch, database: database, now: 1000, forward: true)
        _ = try WebhookStore.store(batch, database: database, now: 1001, forward: true)  // redelivered
        #expect(try CallbackOutbox.pendingCount(database: database) == 1)

        let item = try #require(try CallbackOutbox.claim(database: database, now: 1000))
        #expect(try JSONParser.parse(item.payload)["response"] == ["flow_token": "t1"])
        // Leased: another process finds nothing until the lease ends.
        #expect(try CallbackOutbox.claim(database: database, now: 1001) == nil)
        let other = try store.open(migrations: WebhookStore.migrations)
        defer { other.close() }
        #expect(try CallbackOutbox.claim(database: other, now: 1001) == nil)
        try CallbackOutbox.failed(item, error: "connection refused", database: database, now: 1002)
        #expect(try CallbackOutbox.claim(database: database, now: 1002 + CallbackOutbox.backoff(afterAttempts: 0) - 1) == nil)
        let retry = try #require(try CallbackOutbox.claim(database: database, now: 1002 + CallbackOutbox.backoff(afterAttempts: 0)))
        #expect(retry.attempts == 1)
        try CallbackOutbox.delivered(retry, database: database, now: 1010)
        #expect(try CallbackOutbox.pendingCount(database: database) == 0)
        #expect(try CallbackOutbox.claim(database: database, now: 99_999) == nil)
    }

    @Test func backoffGrowsAndIsCapped() {
        #expect(CallbackOutbox.backoff(afterAttempts: 0) == 5)
        #expect(CallbackOutbox.backoff(afterAttempts: 3) == 40)
        #expect(CallbackOutbox.backoff(afterAttempts: 30) == 3600)
    }

    @Test func withoutACallbackNothingIsQueued() throws {
        let database = try Database(path: temporaryDirectory() + "/none.db", migrations: WebhookStore.migrations)
        defer { database.close() }
        let batch = try WebhookBatch.parse(Array("""
            {"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
             "messages":[{"from":"1555","id":"wamid.2","timestamp":"100","type":"interactive","interactive":{
             "type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\\"flow_token\\":\\"t2\\"}"}}}]}}]}]}
            """.utf8))
        let stored = try WebhookStore.store(batch, database: database, now: 1000)
        #expect(stored.confirmations == 1)
        #expect(try CallbackOutbox.pendingCount(database: database) == 0)
    }
}
