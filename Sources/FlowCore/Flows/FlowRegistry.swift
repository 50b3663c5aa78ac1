/// The flows this build serves. Adding a flow: one folder under `Flows/`, one line here, one Flow JSON in `flows/`.
public enum FlowRegistry {
    /// Every flow, by registration order.
    public static let all: [FlowFactory] = [
        AppointmentFlow.factory,
        ExpenseFlow.factory,
    ]
}
