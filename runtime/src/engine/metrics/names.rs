//! Every metric name and label name Rotor exports, in one place.

pub use rotor_names::labels::{COMPONENT, ENDPOINT, ERROR_TYPE, KIND, NAMESPACE, SERVICE, SERVICE_ID};

/// Requests handled, per endpoint.
pub const REQUESTS_TOTAL: &str = "rotor_requests_total";
/// Requests that ended in an error reply, by `error_type`.
pub const ERRORS_TOTAL: &str = "rotor_errors_total";
/// Time from a request's arrival to its reply (or a stream's end).
pub const REQUEST_DURATION_SECONDS: &str = "rotor_request_duration_seconds";
/// Requests being handled now.
pub const INFLIGHT_REQUESTS: &str = "rotor_inflight_requests";
/// Request payload bytes received.
pub const REQUEST_BYTES_TOTAL: &str = "rotor_request_bytes_total";
/// Response payload bytes sent, stream items included.
pub const RESPONSE_BYTES_TOTAL: &str = "rotor_response_bytes_total";
/// Stream items sent.
pub const STREAM_ITEMS_TOTAL: &str = "rotor_stream_items_total";
/// Requests cancelled before they finished: caller gone, deadline, shutdown.
pub const CANCELLATIONS_TOTAL: &str = "rotor_cancellations_total";

/// Calls made by clients, per endpoint called.
pub const CLIENT_REQUESTS_TOTAL: &str = "rotor_client_requests_total";
/// Calls that failed outside the handler, by `kind`.
pub const CLIENT_ERRORS_TOTAL: &str = "rotor_client_errors_total";
/// Attempts repeated on another instance after "no responders".
pub const CLIENT_RETRIES_TOTAL: &str = "rotor_client_retries_total";
/// Instances taken out of rotation after "no responders".
pub const CLIENT_EVICTIONS_TOTAL: &str = "rotor_client_evictions_total";
/// Time from a call to its reply, as the caller sees it.
pub const CLIENT_REQUEST_DURATION_SECONDS: &str = "rotor_client_request_duration_seconds";

/// From `$SRV.STATS`: requests per NATS micro endpoint.
pub const NATS_SERVICE_REQUESTS: &str = "rotor_nats_service_requests";
/// From `$SRV.STATS`: errors per NATS micro endpoint.
pub const NATS_SERVICE_ERRORS: &str = "rotor_nats_service_errors";
/// From `$SRV.STATS`: average processing time per NATS micro endpoint.
pub const NATS_SERVICE_AVERAGE_PROCESSING_SECONDS: &str = "rotor_nats_service_average_processing_seconds";

/// Histogram buckets, in seconds: from 50 µs (an embedded call) to 10 min (a
/// long stream), about three per decade.
pub const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
