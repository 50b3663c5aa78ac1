import FlowCore
import Testing

/// A Flow JSON with one terminal screen `FORM` whose Footer sends `payload` by data_exchange.
private func oneScreen(_ components: String, payload: String, data: String = "{}",
                       version: String = "7.0") -> String {
    """
    {"version": "\(version)", "data_api_version": "3.0", "routing_model": {"FORM": []},
     "screens": [{"id": "FORM", "terminal": true, "data": \(data),
       "layout": {"type": "SingleColumnLayout", "children": [\(components),
         {"type": "Footer", "label": "Send", "on-click-action": {"name": "data_exchange", "payload": \(payload)}}]}}]}
    """
}

private func compile(_ text: String, sidecar: String? = nil) throws(FormDefinitionError) -> FormDefinition {
    try FormDefinition.compile(flowJSON: Array(text.utf8), sidecar: sidecar.map { Array($0.utf8) },
                               file: "test.json")
}

/// The problems of a definition that must not compile.
private func problems(_ text: String, sidecar: String? = nil) -> [FlowJSONProblem] {
    do {
        _ = try compile(text, sidecar: sidecar)
        return []
    } catch {
        return error.problems
    }
}

private let day = CalendarDay("2026-01-12")!

private func errorMessage(_ step: FormStep) -> String? {
    guard case .invalid(let answer) = step else { return nil }
    return answer.screenData?["error_message"]?.stringValue
}

// MARK: - Validation attributes

@Suite("Form engine: validation attributes")
struct FormValidationTests {
    static let flow = oneScreen("""
        {"type": "TextInput", "name": "name", "label": "Your name", "required": true, "min-chars": 2,
         "max-chars": 40},
        {"type": "TextInput", "name": "email", "label": "Email", "input-type": "email", "required": true},
        {"type": "TextInput", "name": "phone", "label": "Phone", "input-type": "phone", "required": false},
        {"type": "TextInput", "name": "amount", "label": "Amount", "input-type": "number", "required": false},
        {"type": "TextInput", "name": "code", "label": "Code", "pattern": "[A-Z]{2}[0-9]{4}",
         "helper-text": "two letters, four digits"},
        {"type": "TextArea", "name": "notes", "label": "Notes", "max-length": 10},
        {"type": "DatePicker", "name": "day", "label": "Day", "min-date": "2026-01-10", "max-date": "2026-01-20",
         "unavailable-dates": ["2026-01-15"]},
        {"type": "CheckboxGroup", "name": "topics", "label": "Topics", "min-selected-items": 2,
         "max-selected-items": 3, "data-source": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"},
         {"id": "c", "title": "C"}, {"id": "d", "title": "D"}, {"id": "x", "title": "X", "enabled": false}]},
        {"type": "Dropdown", "name": "color", "label": "Color", "required": true,
         "data-source": [{"id": "red", "title": "Red"}, {"id": "blue", "title": "Blue"}]},
        {"type": "RadioButtonsGroup", "name": "size", "label": "Size", "data-source": "${data.sizes}"},
        {"type": "OptIn", "name": "terms", "label": "I accept the terms", "required": true}
        """,
        payload: """
            {"name": "${form.name}", "email": "${form.email}", "phone": "${form.phone}", "amount": "${form.amount}",
             "code": "${form.code}", "notes": "${form.notes}", "day": "${form.day}", "topics": "${form.topics}",
             "color": "${form.color}", "size": "${form.size}", "terms": "${form.terms}"}
            """,
        data: """
            {"sizes": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"},
              "title": {"type": "string"}}}, "__example__": []}}
            """)
    static let sidecar = """
        {"values": {"FORM": {"sizes": [{"id": "s", "title": "Small"}, {"id": "l", "title": "Large"}]}}}
        """
    static let valid: [String: JSONValue] = [
        "name": "Alex", "email": "alex@example.com", "phone": "+44 20 7946 0000", "amount": "12.5", "code": "AB1234",
        "notes": "ok", "day": "2026-01-12", "topics": ["a", "b"], "color": "red", "size": "s", "terms": true,
    ]

    let definition: FormDefinition

    init() throws { definition = try compile(Self.flow, sidecar: Self.sidecar) }

    func submit(_ changes: [String: JSONValue?]) -> FormStep {
        var payload = Self.valid
        for (key, value) in changes { payload[key] = value }
        return definition.step(screen: "FORM", payload: payload, collected: [:], today: day)
    }

    func accepted(_ changes: [String: JSONValue?]) -> Bool {
        if case .complete = submit(changes) { return true }
        return false
    }

    @Test func validSubmitCompletesWithTheValues() {
        guard case .complete(let values) = submit([:]) else {
            Issue.record("expected completion, got \(submit([:]))")
            return
        }
        #expect(values == Self.valid)
    }

    @Test func initialAnswerCarriesTheSidecarValues() {
        #expect(definition.entryScreen == "FORM")
        let answer = definition.initial(today: day)
        #expect(answer.screenID == "FORM")
        #expect(answer.screenData == ["sizes": [["id": "s", "title": "Small"], ["id": "l", "title": "Large"]]])
        guard case .prepared = answer else {
            Issue.record("an entry screen that does not depend on the day is serialized once")
            return
        }
    }

    @Test func maxAndMinCharsAtTheirBoundaries() {
        #expect(accepted(["name": .string(String(repeating: "a", count: 40))]))
        #expect(errorMessage(submit(["name": .string(String(repeating: "a", count: 41))]))
            == "Your name can have at most 40 characters.")
        #expect(accepted(["name": "ab"]))
        #expect(errorMessage(submit(["name": "a"])) == "Your name needs at least 2 characters.")
        #expect(errorMessage(submit(["name": "   "])) == "Your name is required.")
        #expect(errorMessage(submit(["name": nil])) == "Your name is required.")
        #expect(errorMessage(submit(["name": 12])) == "Your name: the value sent is not valid. Please try again.")
    }

    @Test func emailPhoneAndNumberInputTypes() {
        #expect(errorMessage(submit(["email": "alex@"])) == "Email must be an email address, like name@example.com.")
        #expect(errorMessage(submit(["phone": "12ab"]))
            == "Phone must be a phone number: 7 to 15 digits, optionally starting with +.")
        #expect(accepted(["phone": ""]))
        #expect(errorMessage(submit(["amount": "12.5.1"])) == "Amount must be a number, like 12 or 12.5.")
        #expect(accepted(["amount": .number("7")]))
        #expect(accepted(["amount": "-3,25"]))
    }

    @Test func patternMustMatchTheWholeText() {
        #expect(errorMessage(submit(["code": "AB12345"]))
            == "Code is not in the expected format (two letters, four digits).")
        #expect(errorMessage(submit(["code": "ab1234"])) != nil)
        #expect(accepted(["code": "ZZ0000"]))
    }

    @Test func textAreaMaxLength() {
        #expect(accepted(["notes": "0123456789"]))
        #expect(errorMessage(submit(["notes": "0123456789x"])) == "Notes can have at most 10 characters.")
        #expect(errorMessage(submit(["notes": "a\u{7}b"])) == "Notes contains characters that cannot be saved.")
        #expect(accepted(["notes": "a\nb"]))
    }

    @Test func datesAtMinMaxAndUnavailable() {
        #expect(accepted(["day": "2026-01-10"]))
        #expect(accepted(["day": "2026-01-20"]))
        #expect(errorMessage(submit(["day": "2026-01-09"])) == "Day cannot be before 2026-01-10.")
        #expect(errorMessage(submit(["day": "2026-01-21"])) == "Day cannot be after 2026-01-20.")
        #expect(errorMessage(submit(["day": "2026-01-15"]))
            == "Day: that date is not available. Please pick another one.")
        #expect(errorMessage(submit(["day": "2026-02-30"])) == "Day must be a date picked from the calendar.")
        #expect(accepted(["day": nil]))
    }

    @Test func checkboxSelectionCounts() {
        #expect(accepted(["topics": ["a", "b", "c"]]))
        #expect(errorMessage(submit(["topics": ["a"]])) == "Topics: choose at least 2 options.")
        #expect(errorMessage(submit(["topics": ["a", "b", "c", "d"]])) == "Topics: choose at most 3 options.")
        #expect(errorMessage(submit(["topics": ["a", "zz"]])) == "Topics: choose among the listed options.")
        #expect(errorMessage(submit(["topics": ["a", "x"]])) == "Topics: choose among the listed options.")
        #expect(accepted(["topics": []]))  // not required: empty is allowed, min applies to a selection
    }

    @Test func dropdownAndRadioIdsMustBeListed() {
        #expect(errorMessage(submit(["color": "green"])) == "Color: choose one of the listed options.")
        #expect(errorMessage(submit(["color": ""])) == "Color is required: choose an option.")
        #expect(accepted(["size": "l"]))
        #expect(errorMessage(submit(["size": "xl"])) == "Size: choose one of the listed options.")
    }

    @Test func optInRequired() {
        #expect(errorMessage(submit(["terms": false])) == "I accept the terms: this must be ticked to continue.")
        #expect(errorMessage(submit(["terms": nil])) == "I accept the terms: this must be ticked to continue.")
    }

    @Test func payloadKeysMustBeExactlyTheFootersOnes() {
        #expect(errorMessage(submit(["admin": true]))
            == "Something went wrong: this screen sent a field it does not have (admin). Please try again.")
        #expect(errorMessage(definition.step(screen: "NOPE", payload: [:], collected: [:], today: day))
            == "Something went wrong. Please fill in the form again.")
    }

    @Test func invalidAnswerIsTheSameScreenWithEveryDeclaredField() {
        guard case .invalid(let answer) = submit(["color": "green"]) else {
            Issue.record("expected invalid")
            return
        }
        #expect(answer.screenID == "FORM")
        #expect(Set(answer.screenData?.keys ?? [:].keys) == ["sizes", "error_message"])
    }
}

// MARK: - Routing, carried values, sidecar

@Suite("Form engine: routing and sidecar")
struct FormRoutingTests {
    static let survey = """
        {"version": "7.0", "data_api_version": "3.0",
         "routing_model": {"FEEDBACK": ["CONTACT", "THANKS"], "CONTACT": ["THANKS"], "THANKS": []},
         "screens": [
          {"id": "FEEDBACK", "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "RadioButtonsGroup", "name": "rating", "label": "Rating", "required": true,
             "data-source": [{"id": "1", "title": "Bad"}, {"id": "5", "title": "Good"}]},
            {"type": "RadioButtonsGroup", "name": "follow_up", "label": "Contact me", "required": true,
             "data-source": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]},
            {"type": "Footer", "label": "Next", "on-click-action": {"name": "data_exchange",
             "payload": {"rating": "${form.rating}", "follow_up": "${form.follow_up}"}}}]}},
          {"id": "CONTACT", "data": {"rating": {"type": "string", "__example__": "5"}},
           "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "TextBody", "text": "You rated ${data.rating}"},
            {"type": "TextInput", "name": "email", "label": "Email", "input-type": "email", "required": true},
            {"type": "Footer", "label": "Next", "on-click-action": {"name": "data_exchange",
             "payload": {"email": "${form.email}"}}}]}},
          {"id": "THANKS", "terminal": true, "data": {"rating": {"type": "string", "__example__": "5"}},
           "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "TextBody", "text": "Thanks for ${data.rating}"},
            {"type": "Footer", "label": "Done", "on-click-action": {"name": "data_exchange",
             "payload": {"rating": "${data.rating}"}}}]}}]}
        """
    static let routes = """
        {"routes": {"FEEDBACK": [{"when": {"field": "follow_up", "equals": "yes"}, "next": "CONTACT"},
                                 {"next": "THANKS"}]}}
        """

    @Test func twoForwardEdgesNeedASidecarRoute() {
        #expect(problems(Self.survey) == [FlowJSONProblem(
            file: "test.json", pointer: "/screens/0/layout/children/2",
            message: "FEEDBACK has 2 forward edges (CONTACT, THANKS): add routes.FEEDBACK to the sidecar to pick one")])
    }

    @Test func theSidecarRoutePicksTheFollowUpScreen() throws {
        let definition = try compile(Self.survey, sidecar: Self.routes)
        let yes = definition.step(screen: "FEEDBACK", payload: ["rating": "5", "follow_up": "yes"], collected: [:],
                                  today: day)
        guard case .next(let answer, let collected) = yes else {
            Issue.record("expected next, got \(yes)")
            return
        }
        #expect(answer == .screen("CONTACT", data: ["rating": "5"]))
        #expect(collected == ["rating": "5", "follow_up": "yes"])
        let contact = definition.step(screen: "CONTACT", payload: ["email": "a@example.com"], collected: collected,
                                      today: day)
        guard case .next(let thanks, let all) = contact else {
            Issue.record("expected next, got \(contact)")
            return
        }
        #expect(thanks == .screen("THANKS", data: ["rating": "5"]))
        // THANKS echoes ${data.rating}: the endpoint keeps its own value, whatever the client sends.
        #expect(definition.step(screen: "THANKS", payload: ["rating": "1"], collected: all, today: day)
            == .complete(values: ["rating": "5", "follow_up": "yes", "email": "a@example.com"]))

        let no = definition.step(screen: "FEEDBACK", payload: ["rating": "1", "follow_up": "no"], collected: [:],
                                 today: day)
        guard case .next(let skipped, _) = no else {
            Issue.record("expected next, got \(no)")
            return
        }
        #expect(skipped == .screen("THANKS", data: ["rating": "1"]))
        #expect(errorMessage(definition.step(screen: "THANKS", payload: [:], collected: all, today: day))
            == "Something went wrong: the field rating was not sent. Please try again.")
    }

    @Test func aSingleForwardEdgeNeedsNoSidecar() throws {
        let text = Self.survey.replacingOccurrences("\"FEEDBACK\": [\"CONTACT\", \"THANKS\"]",
                                                    with: "\"FEEDBACK\": [\"CONTACT\"]")
        let definition = try compile(text)
        let step = definition.step(screen: "FEEDBACK", payload: ["rating": "5", "follow_up": "no"], collected: [:],
                                   today: day)
        guard case .next(let answer, _) = step else {
            Issue.record("expected next, got \(step)")
            return
        }
        #expect(answer.screenID == "CONTACT")
    }

    static let navigated = """
        {"version": "7.0", "data_api_version": "3.0", "routing_model": {"ASK": ["CONFIRM"], "CONFIRM": []},
         "screens": [
          {"id": "ASK", "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "TextInput", "name": "email", "label": "Email", "input-type": "email", "required": true},
            {"type": "Footer", "label": "Next", "on-click-action": {"name": "navigate",
             "next": {"type": "screen", "name": "CONFIRM"}, "payload": {"email": "${form.email}"}}}]}},
          {"id": "CONFIRM", "terminal": true, "data": {"email": {"type": "string", "__example__": "a@b.co"}},
           "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "TextBody", "text": "${data.email}"},
            {"type": "OptIn", "name": "ok", "label": "Correct", "required": true},
            {"type": "Footer", "label": "Send", "on-click-action": {"name": "data_exchange",
             "payload": {"email": "${data.email}", "ok": "${form.ok}"}}}]}}]}
        """

    @Test func aValueCarriedByNavigateIsCheckedAgainstItsComponent() throws {
        let definition = try compile(Self.navigated)
        #expect(definition.step(screen: "CONFIRM", payload: ["email": "a@example.com", "ok": true], collected: [:],
                                today: day) == .complete(values: ["email": "a@example.com", "ok": true]))
        let tampered = definition.step(screen: "CONFIRM", payload: ["email": "not-an-email", "ok": true],
                                       collected: [:], today: day)
        #expect(errorMessage(tampered)
            == "Email must be an email address, like name@example.com. Go back to ASK to correct it.")
        guard case .invalid(let answer) = tampered else { return }
        #expect(Set(answer.screenData?.keys ?? [:].keys) == ["email", "error_message"])
    }

    static let dates = """
        {"version": "7.0", "data_api_version": "3.0", "routing_model": {"DATES": []},
         "screens": [{"id": "DATES", "terminal": true,
           "data": {"min_date": {"type": "string", "__example__": "2026-01-01"}},
           "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "DatePicker", "name": "start_date", "label": "Start", "required": true,
             "min-date": "${data.min_date}"},
            {"type": "DatePicker", "name": "end_date", "label": "End", "required": true,
             "min-date": "${data.min_date}"},
            {"type": "Footer", "label": "Send", "on-click-action": {"name": "data_exchange",
             "payload": {"start_date": "${form.start_date}", "end_date": "${form.end_date}"}}}]}}]}
        """
    static let dateRules = """
        {"values": {"DATES": {"min_date": {"today": 0}}},
         "checks": [{"screen": "DATES", "field": "end_date", "not_before": "start_date",
                     "message": "The end date cannot be before the start date"}]}
        """

    @Test func sidecarValuesAreComputedForTodayAndChecksApply() throws {
        let definition = try compile(Self.dates, sidecar: Self.dateRules)
        #expect(definition.initial(today: day) == .screen("DATES", data: ["min_date": "2026-01-12"]))
        #expect(definition.initial(today: day.adding(days: 1)) == .screen("DATES", data: ["min_date": "2026-01-13"]))
        func submit(_ start: String, _ end: String) -> FormStep {
            definition.step(screen: "DATES", payload: ["start_date": .string(start), "end_date": .string(end)],
                            collected: [:], today: day)
        }
        #expect(errorMessage(submit("2026-01-11", "2026-01-20")) == "Start cannot be before 2026-01-12.")
        #expect(errorMessage(submit("2026-01-14", "2026-01-13")) == "The end date cannot be before the start date")
        #expect(submit("2026-01-12", "2026-01-12")
            == .complete(values: ["start_date": "2026-01-12", "end_date": "2026-01-12"]))
        guard case .invalid(let answer) = submit("2026-01-14", "2026-01-13") else { return }
        #expect(answer.screenData?["min_date"] == "2026-01-12")
    }

    @Test func sidecarRangeCheck() throws {
        let text = oneScreen("""
            {"type": "TextInput", "name": "percent", "label": "Alert at", "input-type": "number", "required": true}
            """, payload: "{\"percent\": \"${form.percent}\"}")
        let definition = try compile(text, sidecar: """
            {"checks": [{"screen": "FORM", "field": "percent", "min": 1, "max": 100,
                         "message": "Alert threshold: a whole number from 1 to 100"}]}
            """)
        func submit(_ value: String) -> FormStep {
            definition.step(screen: "FORM", payload: ["percent": .string(value)], collected: [:], today: day)
        }
        #expect(submit("1") == .complete(values: ["percent": "1"]))
        #expect(submit("100") == .complete(values: ["percent": "100"]))
        #expect(errorMessage(submit("0")) == "Alert threshold: a whole number from 1 to 100")
        #expect(errorMessage(submit("101")) == "Alert threshold: a whole number from 1 to 100")
    }
}

@Suite("Form engine: screens the endpoint only shows")
struct FormEndingTests {
    static func flow(doneChildren: String) -> String {
        """
        {"version": "7.0", "data_api_version": "3.0", "routing_model": {"ASK": ["DONE"], "DONE": []},
         "screens": [
          {"id": "ASK", "data": {"name": {"type": "string", "__example__": ""}},
           "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "TextInput", "name": "name", "label": "Name", "required": true, "max-chars": 5,
             "init-value": "${data.name}"},
            {"type": "Footer", "label": "Next", "on-click-action": {"name": "data_exchange",
             "payload": {"name": "${form.name}"}}}]}},
          {"id": "DONE", "terminal": true, "data": {"name": {"type": "string", "__example__": "Alex"}},
           "layout": {"type": "SingleColumnLayout", "children": [\(doneChildren)
            {"type": "Footer", "label": "Close", "on-click-action": {"name": "complete", "payload": {}}}]}}]}
        """
    }
    static let sidecar = "{\"values\": {\"ASK\": {\"name\": \"\"}}}"

    @Test func aTerminalCompleteScreenIsShownWithTheValuesToStore() throws {
        let definition = try compile(Self.flow(doneChildren: "{\"type\": \"TextBody\", \"text\": \"${data.name}\"},"),
                                     sidecar: Self.sidecar)
        #expect(definition.initial(today: day) == .screen("ASK", data: ["name": ""]))
        #expect(definition.step(screen: "ASK", payload: ["name": " Alex "], collected: [:], today: day)
            == .completeShowing(.screen("DONE", data: ["name": "Alex"]), values: ["name": "Alex"]))
        // Invalid: ASK again, what was typed shown back through its init-value.
        #expect(definition.step(screen: "ASK", payload: ["name": "Alexandra"], collected: [:], today: day)
            == .invalid(.screen("ASK", data: ["name": "Alexandra"],
                                errorMessage: "Name can have at most 5 characters.")))
    }

    @Test func aTerminalCompleteScreenCannotHaveInputs() {
        let text = Self.flow(doneChildren: "{\"type\": \"OptIn\", \"name\": \"ok\", \"label\": \"OK\"},")
        #expect(problems(text, sidecar: Self.sidecar) == [FlowJSONProblem(
            file: "test.json", pointer: "/screens/1/layout/children/1",
            message: "DONE ends with complete, which sends its values to the webhook only: it cannot have input "
                + "components (submit with data_exchange instead)")])
    }

    @Test func aScreenIsShownEitherByNavigateOrByTheEndpoint() {
        let text = """
            {"version": "7.0", "data_api_version": "3.0", "routing_model": {"A": ["B", "C"], "B": ["C"], "C": []},
             "screens": [
              {"id": "A", "layout": {"type": "SingleColumnLayout", "children": [
                {"type": "EmbeddedLink", "text": "More", "on-click-action": {"name": "navigate",
                 "next": {"type": "screen", "name": "B"}, "payload": {}}},
                {"type": "Footer", "label": "Go", "on-click-action": {"name": "data_exchange", "payload": {}}}]}},
              {"id": "B", "layout": {"type": "SingleColumnLayout", "children": [
                {"type": "Footer", "label": "Go", "on-click-action": {"name": "navigate",
                 "next": {"type": "screen", "name": "C"}, "payload": {}}}]}},
              {"id": "C", "terminal": true, "layout": {"type": "SingleColumnLayout", "children": [
                {"type": "Footer", "label": "Done", "on-click-action": {"name": "data_exchange", "payload": {}}}]}}]}
            """
        #expect(problems(text) == [FlowJSONProblem(
            file: "test.json", pointer: "/screens/2",
            message: "C is shown both by navigate (from B) and by the endpoint's answer (from A): the engine could "
                + "not tell its data")])
    }

    @Test func anAttributeCannotReadWhatTheUserTypedEarlier() {
        let text = """
            {"version": "7.0", "data_api_version": "3.0", "routing_model": {"ASK": ["NEXT"], "NEXT": []},
             "screens": [
              {"id": "ASK", "layout": {"type": "SingleColumnLayout", "children": [
                {"type": "TextInput", "name": "limit", "label": "Limit", "input-type": "number"},
                {"type": "Footer", "label": "Go", "on-click-action": {"name": "navigate",
                 "next": {"type": "screen", "name": "NEXT"}, "payload": {"limit": "${form.limit}"}}}]}},
              {"id": "NEXT", "terminal": true, "data": {"limit": {"type": "number", "__example__": 3}},
               "layout": {"type": "SingleColumnLayout", "children": [
                {"type": "TextInput", "name": "text", "label": "Text", "max-chars": "${data.limit}"},
                {"type": "Footer", "label": "Done", "on-click-action": {"name": "data_exchange",
                 "payload": {"text": "${form.text}"}}}]}}]}
            """
        #expect(problems(text) == [FlowJSONProblem(
            file: "test.json", pointer: "/screens/1/layout/children/0/max-chars",
            message: "reads ${data.limit}, which comes from the user's input on an earlier screen: the engine needs a "
                + "value it knows (its own answer's, or a literal)")])
    }
}

// MARK: - Compile errors

@Suite("Form engine: compile errors carry the file and a JSON pointer")
struct FormCompileErrorTests {
    static let input = "{\"type\": \"TextInput\", \"name\": \"a\", \"label\": \"A\"}"
    static let sendA = "{\"a\": \"${form.a}\"}"

    func only(_ found: [FlowJSONProblem], _ pointer: String, _ message: String, file: String = "test.json") {
        #expect(found == [FlowJSONProblem(file: file, pointer: pointer, message: message)])
    }

    @Test func attributeValues() {
        only(problems(oneScreen("{\"type\": \"TextInput\", \"name\": \"a\", \"max-chars\": 0}", payload: Self.sendA)),
             "/screens/0/layout/children/0/max-chars", "must be a positive integer or ${data.<field>}")
        only(problems(oneScreen("{\"type\": \"DatePicker\", \"name\": \"a\", \"min-date\": \"2026-13-01\"}",
                                payload: Self.sendA)),
             "/screens/0/layout/children/0/min-date", "must be a date YYYY-MM-DD or ${data.<field>}")
        only(problems(oneScreen("{\"type\": \"Dropdown\", \"name\": \"a\"}", payload: Self.sendA)),
             "/screens/0/layout/children/0/data-source", "is required: the options to choose from")
        only(problems(oneScreen("{\"type\": \"TextInput\", \"name\": \"a\", \"pattern\": \"[\"}", payload: Self.sendA)),
             "/screens/0/layout/children/0/pattern",
             "is not a supported regular expression: an unclosed [ (character 1)")
        only(problems(oneScreen("{\"type\": \"TextInput\", \"name\": \"a\", \"pattern\": \"(?=a)a\"}",
                                payload: Self.sendA)),
             "/screens/0/layout/children/0/pattern",
             "is not a supported regular expression: lookahead (?= is not supported (character 1)")
    }

    @Test func patternNeedsVersion62() {
        let component = "{\"type\": \"TextInput\", \"name\": \"a\", \"pattern\": \"[0-9]+\"}"
        only(problems(oneScreen(component, payload: Self.sendA, version: "6.1")),
             "/screens/0/layout/children/0/pattern",
             "`pattern` needs Flow JSON version 6.2 or later (this file is 6.1)")
        #expect(problems(oneScreen(component, payload: Self.sendA, version: "6.2")) == [])
    }

    @Test func versions() {
        only(problems(oneScreen(Self.input, payload: Self.sendA, version: "5.0")),
             "/version", "version \"5.0\" is not served: use 6.0 to 7.x (7.x recommended)")
        #expect(problems(oneScreen(Self.input, payload: Self.sendA, version: "6.0")) == [])
    }

    @Test func references() {
        only(problems(oneScreen("{\"type\": \"TextBody\", \"text\": \"${data.nope}\"}", payload: "{}")),
             "/screens/0/layout/children/0/text", "${data.nope} is not declared in FORM's data")
        only(problems(oneScreen(Self.input, payload: "{\"a\": \"${form.b}\"}")),
             "/screens/0/layout/children/1/on-click-action/payload/a", "${form.b} names no component of FORM")
        only(problems(oneScreen(Self.input, payload: "{\"error_message\": \"${form.a}\"}")),
             "/screens/0/layout/children/1/on-click-action/payload/error_message",
             "error_message is the client's own field: send the value under another name")
    }

    static func twoScreens(routing: String, first: String = "\"terminal\": false",
                           firstAction: String = "{\"name\": \"data_exchange\", \"payload\": {}}",
                           secondData: String = "{}") -> String {
        """
        {"version": "7.0", "data_api_version": "3.0", "routing_model": \(routing),
         "screens": [
          {"id": "A", \(first), "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "Footer", "label": "Go", "on-click-action": \(firstAction)}]}},
          {"id": "B", "terminal": true, "data": \(secondData), "layout": {"type": "SingleColumnLayout", "children": [
            {"type": "Footer", "label": "Done", "on-click-action": {"name": "data_exchange", "payload": {}}}]}}]}
        """
    }

    @Test func routingRules() {
        #expect(problems(Self.twoScreens(routing: "{\"A\": [\"B\"], \"B\": []}")) == [])
        #expect(problems(Self.twoScreens(routing: "{\"A\": [\"B\"], \"B\": [\"A\"]}")).map(\.pointer)
            == ["/routing_model/A/0", "/routing_model/B/0", "/routing_model"])
        only(problems(Self.twoScreens(routing: "{\"A\": [], \"B\": []}")), "/routing_model",
             "needs exactly one entry screen (no edge points to it), found A, B")
        only(problems(Self.twoScreens(routing: "{\"A\": [\"C\"], \"B\": []}")), "/routing_model/A/0",
             "names no screen")
        only(problems(Self.twoScreens(routing: "{\"A\": [\"B\"]}")), "/routing_model",
             "screen B is missing (list it, with [] when it has no edge)")
    }

    @Test func aCycleIsReportedOnItsEdge() {
        let text = """
            {"version": "7.0", "data_api_version": "3.0",
             "routing_model": {"A": ["B"], "B": ["C"], "C": ["B"]},
             "screens": [
              {"id": "A", "layout": {"type": "SingleColumnLayout", "children": []}},
              {"id": "B", "layout": {"type": "SingleColumnLayout", "children": []}},
              {"id": "C", "layout": {"type": "SingleColumnLayout", "children": []}}]}
            """
        let found = problems(text)
        #expect(found.map(\.pointer) == ["/routing_model/B/0", "/routing_model/C/0"])
        #expect(found.first?.message == "B -> C closes a cycle: list forward edges only (the back button already "
            + "returns)")
    }

    @Test func atMostTenEdges() {
        let ids = (0..<6).map { "S" + String(UnicodeScalar(UInt8(65 + $0))) }
        var routing: [String] = []
        for (i, id) in ids.enumerated() {
            routing.append("\"\(id)\": [" + ids[(i + 1)...].map { "\"\($0)\"" }.joined(separator: ", ") + "]")
        }
        let screens = ids.map { id in
            "{\"id\": \"\(id)\", \"terminal\": true, \"layout\": {\"type\": \"SingleColumnLayout\", \"children\": ["
                + "{\"type\": \"Footer\", \"label\": \"x\", \"on-click-action\": {\"name\": \"complete\", "
                + "\"payload\": {}}}]}}"
        }
        let text = "{\"version\": \"7.0\", \"data_api_version\": \"3.0\", \"routing_model\": {"
            + routing.joined(separator: ", ") + "}, \"screens\": [" + screens.joined(separator: ", ") + "]}"
        #expect(problems(text).contains(FlowJSONProblem(file: "test.json", pointer: "/routing_model",
                                                        message: "has 15 edges; at most 10 are allowed")))
    }

    @Test func aRouteMustReachATerminalScreen() {
        let text = Self.twoScreens(routing: "{\"A\": [\"B\"], \"B\": []}")
            .replacingOccurrences("{\"id\": \"B\", \"terminal\": true", with: "{\"id\": \"B\"")
        #expect(problems(text).first == FlowJSONProblem(
            file: "test.json", pointer: "/routing_model/B",
            message: "the route A -> B ends at B, which is not terminal"))
    }

    @Test func navigatePayloadFillsExactlyTheTargetsData() {
        let text = Self.twoScreens(
            routing: "{\"A\": [\"B\"], \"B\": []}",
            firstAction: "{\"name\": \"navigate\", \"next\": {\"type\": \"screen\", \"name\": \"B\"}, \"payload\": {}}",
            secondData: "{\"x\": {\"type\": \"string\", \"__example__\": \"\"}}")
        only(problems(text), "/screens/0/layout/children/0/on-click-action/payload",
             "leaves out x, which B declares (every declared field is required)")
    }

    @Test func anAnswerMustFillEveryDeclaredField() {
        let text = Self.twoScreens(routing: "{\"A\": [\"B\"], \"B\": []}",
                                   secondData: "{\"x\": {\"type\": \"string\", \"__example__\": \"\"}}")
        only(problems(text), "/screens/1/data/x", "nothing fills x when the endpoint shows B after A: no earlier "
            + "screen sends it and the sidecar has no values.B.x")
        #expect(problems(text, sidecar: "{\"values\": {\"B\": {\"x\": \"fixed\"}}}") == [])
    }

    @Test func onlyTheFooterSendsDataExchange() {
        let text = oneScreen("""
            {"type": "Dropdown", "name": "a", "data-source": [{"id": "1", "title": "One"}],
             "on-select-action": {"name": "data_exchange", "payload": {}}}
            """, payload: Self.sendA)
        only(problems(text), "/screens/0/layout/children/0/on-select-action/name",
             "the form engine answers only the Footer's data_exchange (use navigate here, or send it from the Footer)")
    }

    @Test func moreRulesEachWithItsPointer() {
        let form = oneScreen(Self.input, payload: Self.sendA)
        only(problems(form.replacingOccurrences("\"id\": \"FORM\"", with: "\"id\": \"SUCCESS\"")
                .replacingOccurrences("{\"FORM\": []}", with: "{\"SUCCESS\": []}")),
             "/screens/0/id", "SUCCESS is reserved for completion")
        only(problems(form.replacingOccurrences("\"3.0\"", with: "\"2.0\"")), "/data_api_version",
             "must be \"3.0\" (or \"4.0\"): the flow is served by a data endpoint")
        only(problems(oneScreen(Self.input, payload: Self.sendA, data: "{\"x\": {\"type\": \"string\"}}")),
             "/screens/0/data/x", "needs an `__example__`")
        only(problems(oneScreen(Self.input, payload: "{\"a\": \"${form.a} and more\"}")),
             "/screens/0/layout/children/1/on-click-action/payload/a",
             "the engine cannot check this value: use ${form.<name>}, ${data.<name>} or a literal")
        only(problems(oneScreen("""
            {"type": "CheckboxGroup", "name": "a", "min-selected-items": 3, "max-selected-items": 2,
             "data-source": [{"id": "1", "title": "One"}]}
            """, payload: Self.sendA)),
             "/screens/0/layout/children/0/min-selected-items", "must not be more than max-selected-items (2)")
        only(problems(oneScreen("{\"type\": \"TextInput\", \"name\": \"a\", \"input-type\": \"url\"}",
                                payload: Self.sendA)),
             "/screens/0/layout/children/0/input-type", "must be text, number, email, password, passcode or phone")
        let noFooter = """
            {"version": "7.0", "data_api_version": "3.0", "routing_model": {"FORM": []},
             "screens": [{"id": "FORM", "terminal": true, "layout": {"type": "SingleColumnLayout", "children": []}}]}
            """
        only(problems(noFooter), "/screens/0", "a terminal screen needs a Footer")
        let completeTooEarly = FormCompileErrorTests.twoScreens(
            routing: "{\"A\": [\"B\"], \"B\": []}", firstAction: "{\"name\": \"complete\", \"payload\": {}}")
        #expect(problems(completeTooEarly).first == FlowJSONProblem(
            file: "test.json", pointer: "/screens/0/layout/children/0/on-click-action/name",
            message: "`complete` is only allowed on a terminal screen"))
        let offEdge = FormCompileErrorTests.twoScreens(
            routing: "{\"A\": [\"B\"], \"B\": []}",
            firstAction: "{\"name\": \"navigate\", \"next\": {\"type\": \"screen\", \"name\": \"A\"}, "
                + "\"payload\": {}}")
        only(problems(offEdge), "/screens/0/layout/children/0/on-click-action/next/name",
             "A -> A is not an edge of routing_model")
    }

    @Test func sidecarRouteRules() {
        let survey = FormRoutingTests.survey
        only(problems(survey, sidecar: """
            {"routes": {"FEEDBACK": [{"when": {"field": "follow_up", "equals": "yes"}, "next": "CONTACT"},
                                     {"when": {"field": "rating", "in": ["1"]}, "next": "THANKS"}]}}
            """), "/routes/FEEDBACK/1/when",
             "the last route must have no `when` (the route taken when no other applies)", file: "test.rules.json")
        only(problems(survey, sidecar: """
            {"routes": {"FEEDBACK": [{"when": {"field": "email", "present": true}, "next": "CONTACT"},
                                     {"next": "THANKS"}]}}
            """), "/routes/FEEDBACK/0/when/field", "email is not collected by the time FEEDBACK submits",
             file: "test.rules.json")
        // A route back to an earlier screen is reported, not followed (it used to recurse until the stack ran out).
        only(problems(survey, sidecar: """
            {"routes": {"FEEDBACK": [{"when": {"field": "follow_up", "equals": "yes"}, "next": "CONTACT"},
                                     {"next": "THANKS"}],
                        "CONTACT": [{"next": "FEEDBACK"}]}}
            """), "/routes/CONTACT/0/next", "CONTACT -> FEEDBACK is not an edge of routing_model",
             file: "test.rules.json")
    }

    @Test func sidecarProblems() {
        let flow = oneScreen(Self.input, payload: Self.sendA)
        only(problems(flow, sidecar: "{\"bogus\": 1}"), "/bogus", "unknown key (expected routes, checks, values)",
             file: "test.rules.json")
        only(problems(flow, sidecar: "{\"checks\": [{\"screen\": \"FORM\", \"field\": \"b\", \"min\": 1, "
                + "\"message\": \"m\"}]}"),
             "/checks/0/field", "FORM does not send b with data_exchange", file: "test.rules.json")
        only(problems(flow, sidecar: "{\"values\": {\"FORM\": {\"a\": 1}}}"), "/values/FORM/a",
             "FORM declares no data field a", file: "test.rules.json")
        #expect(problems(flow, sidecar: "{\"routes\": {\"FORM\": [{\"next\": \"FORM\"}]}}") == [
            FlowJSONProblem(file: "test.rules.json", pointer: "/routes/FORM/0/next",
                            message: "FORM -> FORM is not an edge of routing_model"),
            FlowJSONProblem(file: "test.rules.json", pointer: "/routes/FORM",
                            message: "FORM is terminal: its submit completes the flow, routes are never used"),
        ])
        let typed = oneScreen(Self.input, payload: Self.sendA,
                              data: "{\"n\": {\"type\": \"number\", \"__example__\": 1}}")
        #expect(problems(typed, sidecar: "{\"values\": {\"FORM\": {\"n\": {\"today\": 0}}}}").contains(
            FlowJSONProblem(file: "test.rules.json", pointer: "/values/FORM/n",
                            message: "gives a value that does not fit n's declared type number")))
        only(problems(flow, sidecar: "{\"routes\": "), "", "not JSON: unexpected end of input at byte 11",
             file: "test.rules.json")
    }
}

// MARK: - Shipped Flow JSON

@Suite("Form engine: the shipped flows follow Meta's rules")
struct ShippedFlowJSONRulesTests {
    @Test(arguments: ["appointment.json", "expense.json"])
    func shippedFlowPassesMetasChecks(_ name: String) throws {
        let bytes = try readFile(repositoryRoot + "/flows/" + name, what: "Flow JSON")
        #expect(FlowJSONRules.problems(flowJSON: bytes, file: name) == [])
    }

    @Test func calendarDayArithmetic() {
        #expect(CalendarDay("2024-02-29")?.adding(days: 1).description == "2024-03-01")
        #expect(CalendarDay("1969-12-31")?.daysSinceEpoch == -1)
        #expect(CalendarDay("2026-01-12")?.epochMillis == 1_768_176_000_000)
        #expect(CalendarDay.today(now: 1_768_176_000 + 86_399).description == "2026-01-12")
        #expect(CalendarDay("2023-02-29") == nil)
        #expect(CalendarDay("0999-01-01")?.description == "0999-01-01")
    }
}

extension String {
    fileprivate func replacingOccurrences(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return self[..<range.lowerBound] + replacement + self[range.upperBound...]
    }
}
