extension AppointmentFlow {
    /// Sessions live in `appointment_sessions` (for the read API's statistics).
    public var sessionTable: String? { "appointment_sessions" }
}
