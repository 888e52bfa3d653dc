//! The response statuses kweb sends, with their reason phrases.

/// A response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: the request is malformed.
    BadRequest,
    /// 403: the path leaves the root, or names a directory without an index.
    Forbidden,
    /// 404.
    NotFound,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 408: the request head did not arrive within the idle timeout.
    RequestTimeout,
    /// 413: a request body above `http::MAX_BODY`.
    PayloadTooLarge,
    /// 414: a request line above `http::MAX_REQUEST_LINE`.
    UriTooLong,
    /// 431: a request head above `http::MAX_HEAD`.
    HeaderTooLarge,
    /// 500: the server failed (an I/O error reading a file).
    InternalError,
    /// 501: a request feature kweb does not implement (`Transfer-Encoding`), or a
    /// `url_cmd` the variant cannot do.
    NotImplemented,
    /// 503: the server is stopping, or a `/work` handler panicked or ran out of its
    /// budget.
    Unavailable,
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

impl Status {
    /// The status line's code and reason phrase, as sent: `"404 Not Found"`.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Forbidden => "403 Forbidden",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Not Allowed",
            Status::RequestTimeout => "408 Request Time-out",
            Status::PayloadTooLarge => "413 Request Entity Too Large",
            Status::UriTooLong => "414 Request-URI Too Large",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
            Status::InternalError => "500 Internal Server Error",
            Status::NotImplemented => "501 Not Implemented",
            Status::Unavailable => "503 Service Temporarily Unavailable",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.line()[..3].parse().expect("every status line starts with its code")
    }
}
