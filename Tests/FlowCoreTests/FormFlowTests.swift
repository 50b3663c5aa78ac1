#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import FlowCore

/// Form flows served from `FLOWS_DIR` through `Endpoint.handle` on a temporary SQLite file (the webhook harness),
/// every 200 answer checked, as sent, against the flow's own Flow JSON.
final class FormHarness {
    let base: WebhookHarness
    let folder: String
    /// The checker of each form flow, from the file served.
    private var checkers: [String: FlowJSONChecker] = [:]

    /// Serves `folder` (default: the shipped `flows/`).
    init(folder: String = repositoryRoot + "/flows", _ extra: [String: String?] = [:],
         engine: Engine = .sqlite) throws {
        self.folder = folder
        var settings = extra
        settings["FLOWS_DIR"] = folder
        base = try WebhookHarness(settings, engine: engine)
    }

    var database: Database { base.database }

    private func checker(_ flow: String) throws -> FlowJSONChecker {
        if let known = checkers[flow] { return known }
        let made = try FlowJSONChecker(text: try readTextFile(folder + "/" + flow + ".json", what: "Flow JSON"))
        checkers[flow] = made
        return made
    }

    /// One encrypted exchange with form flow `flow` at time `now` (the harness's clock when `nil`); a 200 answer
    /// is checked against the flow's Flow JSON unless `check` is false.
    @discardableResult
    func call(_ flow: String, _ action: String, screen: String = "", data: [String: JSONValue] = [:], token: String,
              now: Int64? = nil, check: Bool = true,
              sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int, answer: JSONValue) {
        let call = ClientCall(["version": "3.0", "action": .string(action), "screen": .string(screen),
                               "data": .object(data), "flow_token": .string(token)])
        let endpoint = now.map { later in
            Endpoint(configuration: base.endpoint.configuration, log: base.endpoint.log, clock: { later })
        } ?? base.endpoint
        let response = endpoint.handle(call.request(path: "/flows/\(flow)"), worker: base.worker)
        #expect(response.status == 200 || response.status == 427, "\(bodyText(response))",
                sourceLocation: sourceLocation)
        let answer = try call.open(response)
        if check, response.status == 200 {
            let request = FlowRequest(version: "3.0", action: FlowAction(rawValue: action)!, screen: screen,
                                      data: data, flowToken: token)
            #expect(try checker(flow).problems(request: request, sent: answer) == [],
                    "answer breaks \(flow).json", sourceLocation: sourceLocation)
        }
        return (response.status, answer)
    }

    /// A `data_exchange` expected to show `next` (200); its data.
    @discardableResult
    func step(_ flow: String, _ screen: String, _ data: [String: JSONValue], token: String, shows next: String,
              sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: JSONValue] {
        let (status, answer) = try call(flow, "data_exchange", screen: screen, data: data, token: token,
                                        sourceLocation: sourceLocation)
        #expect(status == 200, sourceLocation: sourceLocation)
        #expect(answer["screen"] == .string(next), "\(answer.text.prefix(300))", sourceLocation: sourceLocation)
        return answer["data"]?.objectValue ?? [:]
    }

    /// A completing `data_exchange`: the `SUCCESS` params.
    func submit(_ flow: String, _ screen: String, _ data: [String: JSONValue] = [:], token: String,
                sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: JSONValue] {
        let data = try step(flow, screen, data, token: token, shows: "SUCCESS", sourceLocation: sourceLocation)
        return data["extension_message_response"]?["params"]?.objectValue ?? [:]
    }

    func count(_ sql: String) throws -> Int64 { try database.query(sql).first?.first?.int ?? -1 }
}

/// A Flow JSON written by the test: a name (10 characters at most) and an email, then a summary that submits.
let surveyFlowJSON = """
    {"version": "7.0", "data_api_version": "3.0",
     "routing_model": {"ASK": ["CONFIRM"], "CONFIRM": []},
     "screens": [
      {"id": "ASK", "title": "Ask", "data": {},
       "layout": {"type": "SingleColumnLayout", "children": [
        {"type": "TextInput", "name": "nickname", "label": "Nickname", "required": true, "max-chars": 10},
        {"type": "TextInput", "name": "email", "label": "Email", "input-type": "email", "required": true},
        {"type": "Footer", "label": "Next", "on-click-action": {"name": "data_exchange",
          "payload": {"nickname": "${form.nickname}", "email": "${form.email}"}}}]}},
      {"id": "CONFIRM", "title": "Confirm", "terminal": true,
       "data": {"nickname": {"type": "string", "__example__": "Ann"}},
       "layout": {"type": "SingleColumnLayout", "children": [
        {"type": "TextBody", "text": "${data.nickname}"},
        {"type": "Footer", "label": "Send", "on-click-action": {"name": "data_exchange", "payload": {}}}]}}]}
    """

@Suite("Form flows served from FLOWS_DIR") struct FormFlowTests {
    /// A fresh folder holding `files` (name -> text).
    static func folder(_ files: [String: String]) -> String {
        let directory = temporaryDirectory()
        for (name, text) in files { writeFile(directory + "/" + name, text) }
        return directory
    }

    @Test(arguments: Engine.all) func aFlowWrittenHereIsWalkedValidatedStoredAndReadBack(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON, "README.md": "not a flow"]), engine: engine)
        let entry = try h.call("survey", "INIT", token: "tok-survey-1")
        #expect(entry.answer["screen"] == "ASK")
        #expect(try h.count("SELECT count(*) FROM form_sessions") == 0)  // INIT stores nothing
        // max-chars 10: 11 refused with a message naming the field, 10 accepted.
        let tooLong = try h.step("survey", "ASK", ["nickname": "abcdefghijk", "email": "a@example.com"],
                                 token: "tok-survey-1", shows: "ASK")
        #expect(tooLong["error_message"]?.stringValue?.contains("10") == true)
        let badEmail = try h.step("survey", "ASK", ["nickname": "Ann", "email": "not-an-email"],
                                  token: "tok-survey-1", shows: "ASK")
        #expect(badEmail["error_message"] != nil)
        let confirm = try h.step("survey", "ASK", ["nickname": "abcdefghij", "email": "a@example.com"],
                                 token: "tok-survey-1", shows: "CONFIRM")
        #expect(confirm["nickname"] == "abcdefghij")
        let params = try h.submit("survey", "CONFIRM", token: "tok-survey-1")
        #expect(params["flow"] == "survey")
        #expect(params["flow_token"] == "tok-survey-1")
        let id = try #require(params["submission_id"])

        let listing = try h.base.read("/api/submissions", "flow=survey")
        #expect(listing["total"] == 1)
        #expect(listing["limit"] == 50)
        #expect(listing["offset"] == 0)
        let item = try #require(listing["data"]?.arrayValue?.first)
        #expect(item["id"] == id)
        #expect(item["flow"] == "survey")
        #expect(item["flow_token"] == "tok-survey-1")
        #expect(item["created_at"] == .string(ISOTime.format(appointmentMonday)))
        #expect(item["values"] == ["nickname": "abcdefghij", "email": "a@example.com"])
        #expect(try h.base.read("/api/submissions", "flow=survey&since=2030-01-01")["total"] == 0)
        #expect(try h.base.read("/api/submissions", "flow=survey&limit=1&offset=1")["data"] == [])

        for (query, named) in [("", "flow is required"), ("flow=nope", "'nope' is not a served form flow"),
                               ("flow=expense", "'expense' is not a served form flow"),
                               ("flow=survey&limit=0", "limit"), ("flow=survey&since=yesterday", "since"),
                               ("flow=survey&color=red", "color")] {
            let response = h.base.get("/api/submissions", query)
            #expect(response.status == 400, "\(query)")
            #expect(bodyText(response).contains(named), "\(query): \(bodyText(response))")
        }
        #expect(h.base.get("/api/submissions", "flow=survey", authorization: nil).status == 401)
    }

    @Test(arguments: Engine.all) func everyCatalogFlowIsWalkedEndToEnd(engine: Engine) throws {
        let h = try FormHarness(engine: engine)
        let today = CalendarDay.today(now: appointmentMonday)

        try h.call("calendar-preferences", "INIT", token: "cal-1")
        let shown = try h.step("calendar-preferences", "CALENDAR_PREFERENCES",
                               ["notify_channels": ["whatsapp", "email"], "reminder": "1_hour",
                                "daily_agenda": true, "time_zone": "Europe/London"],
                               token: "cal-1", shows: "CALENDAR_CONFIRM")
        #expect(shown["time_zone"] == "Europe/London")
        #expect(try h.submit("calendar-preferences", "CALENDAR_CONFIRM", token: "cal-1")["flow"]
            == "calendar-preferences")

        let dates = try h.call("schedule", "INIT", token: "sch-1").answer["data"]
        #expect(dates?["min_date"] == .string(today.description))
        let before = try h.step("schedule", "SCHEDULE_DATES",
                                ["start_date": .string(today.adding(days: 5).description),
                                 "end_date": .string(today.adding(days: 4).description)],
                                token: "sch-1", shows: "SCHEDULE_DATES")
        #expect(before["error_message"] == "The last day cannot be before the first day")
        try h.step("schedule", "SCHEDULE_DATES", ["start_date": .string(today.adding(days: -1).description),
                                                  "end_date": .string(today.description)],
                   token: "sch-1", shows: "SCHEDULE_DATES")  // not in the past
        try h.step("schedule", "SCHEDULE_DATES", ["start_date": .string(today.adding(days: 5).description),
                                                  "end_date": .string(today.adding(days: 9).description)],
                   token: "sch-1", shows: "SCHEDULE_DAYS")
        try h.step("schedule", "SCHEDULE_DAYS", ["days": ["mon", "fri"]], token: "sch-1", shows: "SCHEDULE_TIMES")
        try h.step("schedule", "SCHEDULE_TIMES", ["time_of_day": "morning", "duration": "90"], token: "sch-1",
                   shows: "SCHEDULE_DETAILS")
        try h.step("schedule", "SCHEDULE_DETAILS", ["place": "home", "people": "21", "notes": ""], token: "sch-1",
                   shows: "SCHEDULE_DETAILS")
        let summary = try h.step("schedule", "SCHEDULE_DETAILS", ["place": "home", "people": "20", "notes": "hi"],
                                 token: "sch-1", shows: "SCHEDULE_SUMMARY")
        #expect(summary["duration"] == "90")
        #expect(try h.submit("schedule", "SCHEDULE_SUMMARY", token: "sch-1")["flow"] == "schedule")

        try h.call("budget", "INIT", token: "bud-1")
        let limits = try h.step("budget", "BUDGET_BASICS", ["period": "monthly", "currency": "CHF",
                                                            "categories": ["housing", "leisure"]],
                                token: "bud-1", shows: "BUDGET_LIMITS")
        #expect(limits["currency"] == "CHF")
        let noLimits: [String: JSONValue] = ["limit_housing": "1200", "limit_groceries": "", "limit_transport": "",
                                             "limit_leisure": "12a", "limit_other": ""]
        try h.step("budget", "BUDGET_LIMITS", noLimits, token: "bud-1", shows: "BUDGET_LIMITS")  // pattern
        try h.step("budget", "BUDGET_LIMITS", noLimits.merging(["limit_leisure": "300"]) { $1 }, token: "bud-1",
                   shows: "BUDGET_ALERTS")
        try h.step("budget", "BUDGET_ALERTS", ["warn_percent": "101", "over_limit_alert": true], token: "bud-1",
                   shows: "BUDGET_ALERTS")
        #expect(try h.submit("budget", "BUDGET_ALERTS", ["warn_percent": "100", "over_limit_alert": true],
                             token: "bud-1")["flow"] == "budget")

        let stored = try h.base.read("/api/submissions", "flow=budget")["data"]?.arrayValue?.first?["values"]
        #expect(stored?["currency"] == "CHF")
        #expect(stored?["limit_leisure"] == "300")
        #expect(stored?["warn_percent"] == "100")
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 3)
    }

    @Test(arguments: Engine.all) func theFeedbackBranchGoesBothWays(engine: Engine) throws {
        let h = try FormHarness(engine: engine)
        for (token, followUp) in [("fb-yes", "yes"), ("fb-no", "no")] {
            #expect(try h.call("feedback", "INIT", token: token).answer["screen"] == "FEEDBACK_RATING")
            try h.step("feedback", "FEEDBACK_RATING", ["rating": "6", "comments": ""], token: token,
                       shows: "FEEDBACK_RATING")  // not one of the options
            try h.step("feedback", "FEEDBACK_RATING", ["rating": "4", "comments": "Good"], token: token,
                       shows: "FEEDBACK_FOLLOW_UP")
            if followUp == "yes" {
                try h.step("feedback", "FEEDBACK_FOLLOW_UP", ["follow_up": "yes"], token: token,
                           shows: "FEEDBACK_CONTACT")
                let thanks = try h.step("feedback", "FEEDBACK_CONTACT",
                                        ["contact_name": "Ann Lee", "contact_channel": "call",
                                         "contact_time": "evening"], token: token, shows: "FEEDBACK_THANKS")
                #expect(thanks["follow_up"] == "yes")
            } else {
                let thanks = try h.step("feedback", "FEEDBACK_FOLLOW_UP", ["follow_up": "no"], token: token,
                                        shows: "FEEDBACK_THANKS")
                #expect(thanks["rating"] == "4")
            }
            _ = try h.submit("feedback", "FEEDBACK_THANKS", token: token)
        }
        let rows = try h.base.read("/api/submissions", "flow=feedback")["data"]?.arrayValue ?? []
        #expect(rows.count == 2)
        #expect(rows.first { $0["flow_token"] == "fb-yes" }?["values"]?["contact_name"] == "Ann Lee")
        #expect(rows.first { $0["flow_token"] == "fb-no" }?["values"]?["contact_name"] == nil)
    }

    /// `survey.json` walked to its summary for `token`.
    private func started(_ h: FormHarness, token: String) throws {
        try h.call("survey", "INIT", token: token)
        try h.step("survey", "ASK", ["nickname": "Bo", "email": "bo@example.com"], token: token, shows: "CONFIRM")
    }

    @Test(arguments: Engine.all) func aRetriedFinalSubmitGetsTheSameSuccessAndStoresOnce(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), engine: engine)
        try started(h, token: "tok-retry")
        let first = try h.submit("survey", "CONFIRM", token: "tok-retry")
        let again = try h.submit("survey", "CONFIRM", token: "tok-retry")
        #expect(first == again)
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 1)
        // Anything else from a completed token: 427.
        let other = try h.call("survey", "data_exchange", screen: "ASK",
                               data: ["nickname": "Bo", "email": "bo@example.com"], token: "tok-retry")
        #expect(other.status == 427)
        #expect(other.answer["error_msg"] == .string(FormFlow.completedMessage))
        #expect(try h.call("survey", "INIT", token: "tok-retry").status == 427)
        #expect(try h.call("survey", "BACK", screen: "CONFIRM", token: "tok-retry").status == 427)
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 1)
    }

    @Test func aTerminalScreenThatCompletesOnThePhoneIsStoredWhenShown() throws {
        // CONFIRM ends with `complete` (the endpoint never hears of it): ASK's submit stores the submission.
        let json = surveyFlowJSON.replacing(#""name": "data_exchange", "payload": {}"#,
                                            with: #""name": "complete", "payload": {}"#)
        let h = try FormHarness(folder: Self.folder(["survey.json": json]))
        try h.call("survey", "INIT", token: "tok-shown")
        let ask: [String: JSONValue] = ["nickname": "Cy", "email": "cy@example.com"]
        let shown = try h.step("survey", "ASK", ask, token: "tok-shown", shows: "CONFIRM")
        #expect(shown["nickname"] == "Cy")
        #expect(try h.count("SELECT count(*) FROM form_submissions WHERE flow_token = 'tok-shown'") == 1)
        #expect(try h.step("survey", "ASK", ask, token: "tok-shown", shows: "CONFIRM") == shown)  // a retry
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 1)
        let changed = try h.call("survey", "data_exchange", screen: "ASK",
                                 data: ["nickname": "Di", "email": "cy@example.com"], token: "tok-shown")
        #expect(changed.status == 427)
    }

    @Test(arguments: Engine.all) func theSubmissionsCommandListsAndExportsCSV(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), engine: engine)
        try h.call("survey", "INIT", token: "tok-csv")
        try h.step("survey", "ASK", ["nickname": "=1+2", "email": "e@example.com"], token: "tok-csv",
                   shows: "CONFIRM")
        let id = try h.submit("survey", "CONFIRM", token: "tok-csv")["submission_id"]?.text ?? "?"
        let command = FormSubmissions.command(flows: ["survey"])
        func run(_ arguments: [String]) throws -> FlowCommand.Outcome? {
            guard let work = try command.parse(arguments).1 else { return nil }
            return try work(h.database, appointmentMonday)
        }
        let csv = try run(["--flow", "survey", "--csv"])
        #expect(csv == .done("id,created_at,flow_token,email,nickname\r\n"
            + "\(id),\(ISOTime.format(appointmentMonday)),tok-csv,e@example.com,'=1+2\r\n"))
        guard case .done(let listing)? = try run(["--flow=survey", "--limit", "5"]) else {
            Issue.record("no listing")
            return
        }
        #expect(listing.contains(#"{"email":"e@example.com","nickname":"=1+2"}"#), "\(listing)")
        for arguments in [[], ["--flow", "nope"], ["--flow", "survey", "--limit", "0"], ["--flow", "survey", "x"]] {
            #expect(throws: CommandArguments.Problem.self, "\(arguments)") { try run(arguments) }
        }
    }

    @Test(arguments: Engine.all) func anExpiredTokenGets427(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), engine: engine)
        try started(h, token: "tok-old")
        let hours = Int64(24 * 3600)
        let late = try h.call("survey", "data_exchange", screen: "CONFIRM", token: "tok-old",
                              now: appointmentMonday + hours)
        #expect(late.status == 427)
        #expect(late.answer["error_msg"] == .string(FormFlow.expiredMessage))
        #expect(try h.call("survey", "INIT", token: "tok-old", now: appointmentMonday + hours).status == 427)
        // A second earlier it still submits.
        let params = try h.call("survey", "data_exchange", screen: "CONFIRM", token: "tok-old",
                                now: appointmentMonday + hours - 1).answer
        #expect(params["screen"] == "SUCCESS")
    }

    @Test(arguments: Engine.all) func formSessionHoursIsASetting(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), ["FORM_SESSION_HOURS": "1"], engine: engine)
        try started(h, token: "tok-hour")
        #expect(try h.call("survey", "data_exchange", screen: "CONFIRM", token: "tok-hour",
                           now: appointmentMonday + 3600).status == 427)
        #expect(throws: ConfigError.self) {
            try FormHarness(folder: Self.folder([:]), ["FORM_SESSION_HOURS": "0"])
        }
    }

    @Test(arguments: Engine.all) func skippingAheadWithoutTheEarlierScreensStoresNothing(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), engine: engine)
        let skipped = try h.call("survey", "data_exchange", screen: "CONFIRM", token: "tok-skip")
        #expect(skipped.status == 427, "skipping ahead is refused without a backward transition")
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 0)
    }

    @Test(arguments: Engine.all) func purgeRemovesTheValuesAndKeepsATombstone(engine: Engine) throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]), engine: engine)
        try started(h, token: "tok-purged")
        _ = try h.submit("survey", "CONFIRM", token: "tok-purged")
        try started(h, token: "tok-open")
        let later = appointmentMonday + 91 * 86400
        let report = try Retention.purge(database: h.database, flows: h.base.endpoint.configuration.servedFlows,
                                         days: 90, now: later)
        #expect(report.rows("form_submissions") == 1)
        #expect(report.rows("form_sessions") == 2)
        #expect(try h.count("SELECT count(*) FROM form_submissions WHERE values_json IS NOT NULL") == 0)
        #expect(try h.count("SELECT count(*) FROM form_submissions WHERE flow_token LIKE '%tok-%'") == 0)
        #expect(try h.count("SELECT count(*) FROM form_submissions") == 1)  // id, flow and dates stay
        #expect(try h.count("SELECT count(*) FROM form_tombstones") == 2)
        #expect(try h.count("SELECT count(*) FROM form_sessions") == 0)
        #expect(try h.base.read("/api/submissions", "flow=survey")["total"] == 0)
        for token in ["tok-purged", "tok-open"] {
            #expect(try h.call("survey", "INIT", token: token, now: later).status == 427)
            #expect(try h.call("survey", "data_exchange", screen: "ASK",
                               data: ["nickname": "Bo", "email": "bo@example.com"], token: token,
                               now: later).status == 427)
        }
    }

    @Test func theNfmReplyConfirmsTheSubmissionAndItsCallbackNamesTheFlow() throws {
        let h = try FormHarness(folder: Self.folder(["survey.json": surveyFlowJSON]),
                                ["CALLBACK_URL": "http://127.0.0.1:9/hook"])
        try started(h, token: "tok-confirm")
        let params = try h.submit("survey", "CONFIRM", token: "tok-confirm")
        #expect(try h.base.read("/api/submissions", "flow=survey")["data"]?.arrayValue?.first?["confirmed"] == false)
        #expect(h.base.post(Hook.body(Hook.messages([Hook.flowReply("wamid.form", params: .object(params))])))
            .status == 200)
        let item = try h.base.read("/api/submissions", "flow=survey")["data"]?.arrayValue?.first
        #expect(item?["confirmed"] == true)
        #expect(item?["confirmed_at"] != nil)
        let payload = try #require(try h.database.query("SELECT payload FROM webhook_outbox").first?.first?.string)
        let callback = try JSONParser.parse(payload)
        #expect(callback["flow"] == "survey")
        #expect(callback["flow_token"] == "tok-confirm")
        #expect(callback["response"]?["submission_id"] == params["submission_id"])
        let stats = try h.base.read("/api/stats")
        #expect(stats["flows"]?["survey"] == ["started": 1, "completed": 1, "confirmed": 1])
    }

    @Test(arguments: Engine.all) func statsAndMetricsListEveryServedFlow(engine: Engine) throws {
        let h = try FormHarness(engine: engine)
        try h.call("feedback", "INIT", token: "fb-m")
        try h.step("feedback", "FEEDBACK_RATING", ["rating": "5", "comments": ""], token: "fb-m",
                   shows: "FEEDBACK_FOLLOW_UP")
        let stats = try h.base.read("/api/stats")
        #expect(Set(stats["flows"]?.objectValue?.keys.map { $0 } ?? [])
            == ["appointment", "expense", "feedback", "calendar-preferences", "schedule", "budget"])
        #expect(stats["flows"]?["feedback"] == ["started": 1, "completed": 0, "confirmed": 0])
        let metrics = bodyText(h.base.get("/api/metrics"))
        for flow in ["feedback", "calendar-preferences", "schedule", "budget"] {
            #expect(metrics.contains("flows_submissions_total{flow=\"\(flow)\"} 0\n"), "\(flow)")
        }
        #expect(metrics.contains("flows_bookings_total 0\n"))
        #expect(metrics.split(separator: "\n").filter { $0 == "# TYPE flows_submissions_total gauge" }.count == 1)
        #expect(metrics.contains("flows_requests_total{flow=\"feedback\""))
    }

    @Test func aBrokenFlowJSONStopsLoadingWithItsPointer() throws {
        let broken = surveyFlowJSON.replacing(#""max-chars": 10"#, with: #""max-chars": 0"#)
        let base = ["APP_SECRET": "s", "PRIVATE_KEY_FILE": fixturesDirectory + "/keys/pkcs8.pem"]
        func load(_ files: [String: String]) -> String? {
            do {
                let folder = Self.folder(files)
                _ = try Configuration(settings: Settings(base.merging(["FLOWS_DIR": folder]) { $1 }))
                return nil
            } catch {
                return error.description
            }
        }
        let message = try #require(load(["survey.json": broken, "ok.json": surveyFlowJSON]))
        #expect(message.contains("survey.json: /screens/0/layout/children/0/max-chars: "), "\(message)")
        #expect(load(["survey.json": surveyFlowJSON]) == nil)
        #expect(load(["survey.json": "{"])?.contains("survey.json: /: not JSON") == true)
        #expect(load(["lonely.rules.json": "{}"])?.contains("lonely.rules.json: /: a sidecar without") == true)
        #expect(load(["survey.json": surveyFlowJSON, "survey.rules.json": #"{"colour": 1}"#])?
            .contains("survey.rules.json: /colour") == true)
        // A coded flow's Flow JSON is checked by Meta's rules, not compiled as a form.
        let expense = try readTextFile(repositoryRoot + "/flows/expense.json", what: "Flow JSON")
        #expect(load(["expense.json": expense]) == nil)
        #expect(load(["expense.json": expense.replacing(#""data_api_version": "3.0""#,
                                                        with: #""data_api_version": "2.0""#)])?
            .contains("expense.json: /data_api_version") == true)
        // FLOWS_DIR set to something that is not a folder.
        #expect(throws: ConfigError.self) {
            try Configuration(settings: Settings(base.merging(["FLOWS_DIR": "/nonexistent/flows"]) { $1 }))
        }
    }
}
