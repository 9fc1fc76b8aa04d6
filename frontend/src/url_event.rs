//! Function URLs: the conversion between one HTTP request/response on a function's URL and
//! Lambda's payload format 2.0, and the URL's CORS config (`Cors`). Pure functions: the listener
//! owns the sockets, the invoke and the mapping of a [`UrlResponse`] onto its HTTP response.
//!
//! Per request:
//! 1. CORS preflight: [`Cors::preflight`] answers an allowed `OPTIONS` with `Origin` and
//!    `Access-Control-Request-Method` itself (204); the function never sees it.
//! 2. [`event`] builds the 2.0 event: `Cookie` headers become `cookies` (split on `;`), the other
//!    headers are lower-cased and repeated ones joined with `,`, the query string is
//!    form-decoded into `queryStringParameters` (repeated keys joined with `,`), and the body is
//!    passed as text when it is UTF-8 with a textual (or no) content type, as base64 otherwise.
//! 3. The listener invokes the function with the event.
//! 4. [`response`] turns the function's result into a [`UrlResponse`]: a function error is a 502;
//!    an object with `statusCode` is a structured response (`headers`, `cookies`, `body`,
//!    `isBase64Encoded`); any other JSON value, or a result that is not JSON, is a 200
//!    `application/json` with the result's bytes unchanged.
//! 5. [`Cors::apply`] sets `access-control-allow-origin`, `-expose-headers` and
//!    `-allow-credentials` on the response when the request came from an allowed origin.
use axum::http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, COOKIE, ORIGIN,
    USER_AGENT,
};
use axum::http::{HeaderMap, Method, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// Most entries Lambda accepts in each of the CORS lists.
const MAX_CORS_ENTRIES: usize = 100;
/// Largest `MaxAge` Lambda accepts, seconds (one day).
const MAX_CORS_MAX_AGE: u32 = 86_400;
/// The methods `AllowMethods` may list (besides `*`).
const CORS_METHODS: [Method; 7] = [
    Method::GET,
    Method::PUT,
    Method::HEAD,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// What the listener knows about one request.
#[derive(Debug, Clone, Copy)]
pub struct UrlRequest<'a> {
    /// The HTTP method as sent (`GET`).
    pub method: &'a str,
    /// The path as sent, after the routing prefix was removed; always starts with `/`.
    pub raw_path: &'a str,
    /// The query string without `?`; may be empty.
    pub raw_query: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The request's body; empty when it had none.
    pub body: &'a [u8],
    /// The client's address.
    pub source_ip: IpAddr,
    /// The URL's id (Lambda's `apiId`).
    pub url_id: &'a str,
    /// The `Host` the client used.
    pub domain_name: &'a str,
    /// The function's account.
    pub account_id: &'a str,
    /// This invocation's request id.
    pub request_id: &'a str,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The HTTP version as Lambda writes it (`HTTP/1.1`).
    pub protocol: &'a str,
}

/// The payload format 2.0 event for `req`.
pub fn event(req: &UrlRequest) -> Value {
    let mut ev = Map::new();
    ev.insert("version".into(), json!("2.0"));
    ev.insert("routeKey".into(), json!("$default"));
    ev.insert("rawPath".into(), json!(req.raw_path));
    ev.insert("rawQueryString".into(), json!(req.raw_query));
    let cookies = cookies(req.headers);
    if !cookies.is_empty() {
        ev.insert("cookies".into(), json!(cookies));
    }
    ev.insert("headers".into(), Value::Object(joined_headers(req.headers)));
    let query = query_parameters(req.raw_query);
    if !query.is_empty() {
        ev.insert("queryStringParameters".into(), Value::Object(query));
    }
    let user_agent = req
        .headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    ev.insert(
        "requestContext".into(),
        json!({
            "accountId": req.account_id,
            "apiId": req.url_id,
            "domainName": req.domain_name,
            "domainPrefix": domain_prefix(req.domain_name),
            "http": {
                "method": req.method,
                "path": req.raw_path,
                "protocol": req.protocol,
                "sourceIp": req.source_ip.to_canonical().to_string(),
                "userAgent": user_agent,
            },
            "requestId": req.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": clf_time(req.now_ms),
            "timeEpoch": req.now_ms,
        }),
    );
    // No body: no `body` key at all, as Lambda sends it.
    let base64 = if req.body.is_empty() {
        false
    } else if let Some(text) = body_text(req.headers, req.body) {
        ev.insert("body".into(), json!(text));
        false
    } else {
        ev.insert("body".into(), json!(BASE64.encode(req.body)));
        true
    };
    ev.insert("isBase64Encoded".into(), json!(base64));
    Value::Object(ev)
}

/// Every `Cookie` header's cookies, in order.
fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The headers except `Cookie`, names lower-case (as `HeaderMap` keeps them), repeated values
/// joined with `,`.
fn joined_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .keys()
        .filter(|name| **name != COOKIE)
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), Value::String(values.join(",")))
        })
        .collect()
}

/// `raw_query` form-decoded; a key without `=` has the value `""`, repeated keys are joined
/// with `,`.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut params: Map<String, Value> = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (form_decode(key), form_decode(value));
        match params.get_mut(&key) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                params.insert(key, Value::String(value));
            }
        }
    }
    params
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. A `%` not
/// followed by two hex digits stays as it is; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex_digit(b: Option<&u8>) -> Option<u8> {
    char::from(*b?).to_digit(16).map(|d| d as u8)
}

/// The first label of `domain_name` (`abc` for `abc.lambda-url.us-east-1.on.aws`), without a port.
fn domain_prefix(domain_name: &str) -> &str {
    let label = domain_name.split('.').next().unwrap_or(domain_name);
    label.split(':').next().unwrap_or(label)
}

/// `body` as text when it is UTF-8 and its content type is textual or absent; `None` when it must
/// go as base64.
fn body_text<'b>(headers: &HeaderMap, body: &'b [u8]) -> Option<&'b str> {
    let text = std::str::from_utf8(body).ok()?;
    match headers.get(CONTENT_TYPE) {
        None => Some(text),
        Some(ct) => is_textual(&String::from_utf8_lossy(ct.as_bytes())).then_some(text),
    }
}

/// Whether a `Content-Type` names text Lambda passes unencoded.
fn is_textual(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media.as_str(),
            "application/json"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/javascript"
        )
}

/// Epoch milliseconds in the Common Log Format Lambda uses for `requestContext.time`
/// (`03/Dec/2026:05:34:32 +0000`).
fn clf_time(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::time::civil_from_days(days as i64);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The HTTP response the listener sends for one URL request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlResponse {
    /// The status code (100..=599).
    pub status: u16,
    /// Headers in order, names as the function wrote them (the listener checks they are valid).
    pub headers: Vec<(String, String)>,
    /// Sent as one `set-cookie` header each, after `headers`.
    pub cookies: Vec<String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl UrlResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Removes every header named `name` (case-insensitive).
    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Adds header `name: value`.
    fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_owned(), value.into()));
    }
}

/// The [`UrlResponse`] for a function's result. `result` is the function's response body;
/// `function_error` whether the function failed.
pub fn response(result: &[u8], function_error: bool) -> UrlResponse {
    if function_error {
        return bad_gateway();
    }
    match serde_json::from_slice::<Value>(result) {
        Ok(Value::Object(obj)) if obj.contains_key("statusCode") => {
            structured(&obj).unwrap_or_else(bad_gateway)
        }
        // Any other JSON value, and (as Lambda does) a result that is not JSON at all.
        _ => UrlResponse {
            status: StatusCode::OK.as_u16(),
            headers: vec![(CONTENT_TYPE.as_str().to_owned(), "application/json".into())],
            cookies: Vec::new(),
            body: result.to_vec(),
        },
    }
}

/// A structured response (`{statusCode, headers, cookies, body, isBase64Encoded}`); `None` when it
/// is malformed (a `statusCode` that is not an integer in 100..=599, a `body` that is not valid
/// base64 while `isBase64Encoded` is true). `headers` that is not an object and `cookies` that is
/// not an array are ignored; `multiValueHeaders` is ignored as Lambda does for URLs.
fn structured(obj: &Map<String, Value>) -> Option<UrlResponse> {
    let status = obj
        .get("statusCode")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))?;
    let headers: Vec<(String, String)> = obj
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), json_to_text(value)))
        .collect();
    let cookies = obj
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(json_to_text)
        .collect();
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(body) => json_to_text(body).into_bytes(),
    };
    let body = if obj.get("isBase64Encoded") == Some(&Value::Bool(true)) {
        BASE64.decode(&body).ok()?
    } else {
        body
    };
    let mut resp = UrlResponse {
        status: u16::try_from(status).ok()?,
        headers,
        cookies,
        body,
    };
    if resp.header(CONTENT_TYPE.as_str()).is_none() && !resp.body.is_empty() {
        resp.push_header(CONTENT_TYPE.as_str(), "application/json");
    }
    Some(resp)
}

/// A string's contents; any other JSON value serialised (`5`, `true`, `{"a":1}`).
fn json_to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lambda's answer to a failed or malformed invocation.
fn bad_gateway() -> UrlResponse {
    UrlResponse {
        status: StatusCode::BAD_GATEWAY.as_u16(),
        headers: vec![(CONTENT_TYPE.as_str().to_owned(), "application/json".into())],
        cookies: Vec::new(),
        body: br#"{"Message":"Internal Server Error"}"#.to_vec(),
    }
}

/// A function URL's CORS config (Lambda's `Cors` shape).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Cors {
    /// Whether to allow cookies and other credentials.
    pub allow_credentials: bool,
    /// Request headers a preflight allows (`*`: whatever the browser asks for).
    pub allow_headers: Vec<String>,
    /// Methods a preflight allows (`*`: any).
    pub allow_methods: Vec<String>,
    /// Origins allowed (`*`: any), as `scheme://host[:port]`.
    pub allow_origins: Vec<String>,
    /// Response headers the browser may expose to the page.
    pub expose_headers: Vec<String>,
    /// How long, seconds, a browser may cache a preflight answer; 0: not sent.
    pub max_age: u32,
}

impl Cors {
    /// Validates as Lambda does: origins are `*` or `scheme://host[:port]`, methods are `*` or
    /// one of GET PUT HEAD POST PATCH DELETE OPTIONS, `MaxAge` is at most 86400, each list has
    /// at most 100 entries and header names are HTTP tokens. `Err` holds the message of the
    /// `InvalidParameterValueException`.
    pub fn validate(&self) -> Result<(), String> {
        let lists = [
            ("AllowHeaders", &self.allow_headers),
            ("AllowMethods", &self.allow_methods),
            ("AllowOrigins", &self.allow_origins),
            ("ExposeHeaders", &self.expose_headers),
        ];
        for (field, list) in lists {
            if list.len() > MAX_CORS_ENTRIES {
                return Err(format!(
                    "Cors.{field} has {} entries; at most {MAX_CORS_ENTRIES} are allowed.",
                    list.len()
                ));
            }
        }
        for origin in &self.allow_origins {
            if origin != "*" && !is_origin(origin) {
                return Err(format!(
                    "Cors.AllowOrigins value '{origin}' is not '*' or scheme://host[:port]."
                ));
            }
        }
        for method in &self.allow_methods {
            let known = method == "*"
                || CORS_METHODS
                    .iter()
                    .any(|m| m.as_str().eq_ignore_ascii_case(method));
            if !known {
                return Err(format!(
                    "Cors.AllowMethods value '{method}' is not '*' or one of GET, PUT, HEAD, \
                     POST, PATCH, DELETE, OPTIONS."
                ));
            }
        }
        for (field, list) in [
            ("AllowHeaders", &self.allow_headers),
            ("ExposeHeaders", &self.expose_headers),
        ] {
            if let Some(bad) = list.iter().find(|h| !is_token(h)) {
                return Err(format!(
                    "Cors.{field} value '{bad}' is not a valid HTTP header name."
                ));
            }
        }
        if self.max_age > MAX_CORS_MAX_AGE {
            return Err(format!(
                "Cors.MaxAge {} is greater than {MAX_CORS_MAX_AGE}.",
                self.max_age
            ));
        }
        Ok(())
    }

    /// A preflight answer: `Some(204)` with `access-control-allow-origin`, `-allow-methods`,
    /// `-allow-headers`, `-max-age` and `-allow-credentials` when the request is `OPTIONS` with
    /// `Origin` and `Access-Control-Request-Method` and the origin is allowed; `None` otherwise
    /// (the request goes to the function). Whether the requested method and headers are allowed
    /// is left to the browser, which compares them with the lists sent.
    pub fn preflight(&self, method: &str, headers: &HeaderMap) -> Option<UrlResponse> {
        if method != Method::OPTIONS.as_str() {
            return None;
        }
        let requested_method = header_text(headers, &ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin = self.allowed_origin(headers)?;
        let mut resp = UrlResponse {
            status: StatusCode::NO_CONTENT.as_u16(),
            ..UrlResponse::default()
        };
        resp.push_header(
            "access-control-allow-origin",
            self.allow_origin_value(origin),
        );
        if !self.allow_methods.is_empty() {
            // With credentials a browser reads `*` literally, so name the method asked for.
            let methods = if self.allow_methods.iter().any(|m| m == "*") && self.allow_credentials {
                requested_method.to_owned()
            } else {
                self.allow_methods.join(",")
            };
            resp.push_header("access-control-allow-methods", methods);
        }
        if !self.allow_headers.is_empty() {
            let requested = header_text(headers, &ACCESS_CONTROL_REQUEST_HEADERS);
            let allowed = match requested {
                Some(h) if self.allow_headers.iter().any(|a| a == "*") => h.to_owned(),
                _ => self.allow_headers.join(","),
            };
            resp.push_header("access-control-allow-headers", allowed);
        }
        if self.max_age > 0 {
            resp.push_header("access-control-max-age", self.max_age.to_string());
        }
        if self.allow_credentials {
            resp.push_header("access-control-allow-credentials", "true");
        }
        Some(resp)
    }

    /// Adds `access-control-allow-origin` (the request's `Origin`, or `*` when `AllowOrigins`
    /// has `*` and credentials are off), `access-control-expose-headers` and
    /// `access-control-allow-credentials` to a function's response when the request has an
    /// allowed `Origin`, replacing any such headers the function set. Otherwise `resp` is left
    /// as it is.
    pub fn apply(&self, request_headers: &HeaderMap, resp: &mut UrlResponse) {
        let Some(origin) = self.allowed_origin(request_headers) else {
            return;
        };
        for name in [
            "access-control-allow-origin",
            "access-control-expose-headers",
            "access-control-allow-credentials",
        ] {
            resp.remove_header(name);
        }
        resp.push_header(
            "access-control-allow-origin",
            self.allow_origin_value(origin),
        );
        if !self.expose_headers.is_empty() {
            resp.push_header(
                "access-control-expose-headers",
                self.expose_headers.join(","),
            );
        }
        if self.allow_credentials {
            resp.push_header("access-control-allow-credentials", "true");
        }
    }

    /// The request's `Origin` when `AllowOrigins` allows it (case-insensitive, `*` allows any).
    fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let origin = header_text(headers, &ORIGIN)?;
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// `access-control-allow-origin` for an allowed `origin`: `*` only when any origin is allowed
    /// and credentials are off (browsers refuse `*` with credentials).
    fn allow_origin_value(&self, origin: &str) -> String {
        if !self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            "*".to_owned()
        } else {
            origin.to_owned()
        }
    }
}

/// Header `name`'s first value when it is visible ASCII.
fn header_text<'h>(headers: &'h HeaderMap, name: &axum::http::HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `s` is `scheme://host[:port]`: a scheme of letters, digits, `+`, `-`, `.` starting
/// with a letter; a host name of letters, digits, `-`, `.` or a bracketed IPv6 address; an
/// optional decimal port up to 65535; nothing after it (no path, not even `/`).
fn is_origin(s: &str) -> bool {
    let Some((scheme, authority)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // `port` keeps its leading ':'.
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, port)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
            (host_ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        });
    scheme_ok && host_ok && port_ok
}

/// Whether `s` is an HTTP token (RFC 9110 `tchar`s), which a header name must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn request<'a>(
        method: &'a str,
        raw_query: &'a str,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> UrlRequest<'a> {
        UrlRequest {
            method,
            raw_path: "/my/path",
            raw_query,
            headers,
            body,
            source_ip: "203.0.113.7".parse().expect("ip"),
            url_id: "abcdefghijklmnop",
            domain_name: "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
            account_id: "123456789012",
            request_id: "req-1",
            now_ms: 1_796_276_072_123,
            protocol: "HTTP/1.1",
        }
    }

    #[test]
    fn test_event_request_context() {
        let h = headers(&[
            ("user-agent", "curl/8.5"),
            ("host", "abcdefghijklmnop.lambda-url.us-east-1.on.aws"),
        ]);
        let ev = event(&request("POST", "", &h, b""));
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["routeKey"], "$default");
        assert_eq!(ev["rawPath"], "/my/path");
        assert_eq!(ev["rawQueryString"], "");
        let ctx = &ev["requestContext"];
        assert_eq!(ctx["accountId"], "123456789012");
        assert_eq!(ctx["apiId"], "abcdefghijklmnop");
        assert_eq!(
            ctx["domainName"],
            "abcdefghijklmnop.lambda-url.us-east-1.on.aws"
        );
        assert_eq!(ctx["domainPrefix"], "abcdefghijklmnop");
        assert_eq!(ctx["http"]["method"], "POST");
        assert_eq!(ctx["http"]["path"], "/my/path");
        assert_eq!(ctx["http"]["protocol"], "HTTP/1.1");
        assert_eq!(ctx["http"]["sourceIp"], "203.0.113.7");
        assert_eq!(ctx["http"]["userAgent"], "curl/8.5");
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["routeKey"], "$default");
        assert_eq!(ctx["stage"], "$default");
        assert_eq!(ctx["time"], "03/Dec/2026:05:34:32 +0000");
        assert_eq!(ctx["timeEpoch"], 1_796_276_072_123_u64);
    }

    #[test]
    fn test_event_cookies_split_and_not_in_headers() {
        let h = headers(&[("cookie", "a=1; b=2"), ("cookie", "c=3"), ("accept", "*/*")]);
        let ev = event(&request("GET", "", &h, b""));
        assert_eq!(ev["cookies"], json!(["a=1", "b=2", "c=3"]));
        assert_eq!(ev["headers"], json!({"accept": "*/*"}));
    }

    #[test]
    fn test_event_without_cookies_or_query_omits_the_keys() {
        let h = HeaderMap::new();
        let ev = event(&request("GET", "", &h, b""));
        assert!(ev.get("cookies").is_none());
        assert!(ev.get("queryStringParameters").is_none());
        assert_eq!(ev["headers"], json!({}));
    }

    #[test]
    fn test_event_repeated_headers_joined_lower_case() {
        let mut h = HeaderMap::new();
        h.append("X-Thing", HeaderValue::from_static("one"));
        h.append("x-thing", HeaderValue::from_static("two"));
        h.append("Content-Type", HeaderValue::from_static("text/plain"));
        let ev = event(&request("GET", "", &h, b""));
        assert_eq!(ev["headers"]["x-thing"], "one,two");
        assert_eq!(ev["headers"]["content-type"], "text/plain");
    }

    #[test]
    fn test_event_query_decoded_and_joined() {
        let h = HeaderMap::new();
        let q = "a=1&b=hello+world&c=%E2%82%AC%20x&a=2&flag&&bad=%zz%4";
        let ev = event(&request("GET", q, &h, b""));
        assert_eq!(ev["rawQueryString"], q);
        assert_eq!(
            ev["queryStringParameters"],
            json!({"a": "1,2", "b": "hello world", "c": "€ x", "flag": "", "bad": "%zz%4"})
        );
    }

    #[test]
    fn test_form_decode() {
        assert_eq!(form_decode("a+b%2Bc%3d"), "a b+c=");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn test_event_text_body_as_is() {
        let h = headers(&[("content-type", "application/json; charset=utf-8")]);
        let ev = event(&request("POST", "", &h, br#"{"k":"v"}"#));
        assert_eq!(ev["body"], r#"{"k":"v"}"#);
        assert_eq!(ev["isBase64Encoded"], false);

        let h = headers(&[("content-type", "application/vnd.api+json")]);
        let ev = event(&request("POST", "", &h, b"[]"));
        assert_eq!(ev["body"], "[]");

        let h = HeaderMap::new();
        let ev = event(&request("POST", "", &h, "héllo".as_bytes()));
        assert_eq!(ev["body"], "héllo");
        assert_eq!(ev["isBase64Encoded"], false);
    }

    #[test]
    fn test_event_binary_body_base64() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let ev = event(&request("POST", "", &h, b"hello"));
        assert_eq!(ev["body"], "aGVsbG8=");
        assert_eq!(ev["isBase64Encoded"], true);

        // Not UTF-8, even though the content type is textual.
        let h = headers(&[("content-type", "text/plain")]);
        let ev = event(&request("POST", "", &h, &[0xff, 0x00, 0x01]));
        assert_eq!(ev["body"], "/wAB");
        assert_eq!(ev["isBase64Encoded"], true);
    }

    #[test]
    fn test_event_no_body() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let ev = event(&request("GET", "", &h, b""));
        assert!(ev.get("body").is_none());
        assert_eq!(ev["isBase64Encoded"], false);
    }

    #[test]
    fn test_event_source_ip_v4_mapped() {
        let h = HeaderMap::new();
        let mut req = request("GET", "", &h, b"");
        req.source_ip = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(
            event(&req)["requestContext"]["http"]["sourceIp"],
            "10.0.0.1"
        );
        req.domain_name = "localhost:9000";
        assert_eq!(event(&req)["requestContext"]["domainPrefix"], "localhost");
    }

    #[test]
    fn test_clf_time_known_dates() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(1_796_276_072_999), "03/Dec/2026:05:34:32 +0000");
        assert_eq!(clf_time(1_709_251_199_000), "29/Feb/2024:23:59:59 +0000");
        assert_eq!(clf_time(1_709_251_200_000), "01/Mar/2024:00:00:00 +0000");
    }

    #[test]
    fn test_response_structured_with_cookies_and_base64_body() {
        let result = json!({
            "statusCode": 201,
            "headers": {"X-Custom": "yes", "X-Count": 5, "Content-Type": "image/png"},
            "multiValueHeaders": {"X-Ignored": ["a", "b"]},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "aGVsbG8=",
            "isBase64Encoded": true,
        });
        let resp = response(result.to_string().as_bytes(), false);
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-custom"), Some("yes"));
        assert_eq!(resp.header("x-count"), Some("5"));
        assert_eq!(resp.header("content-type"), Some("image/png"));
        assert_eq!(resp.header("x-ignored"), None);
        assert_eq!(resp.headers.len(), 3);
        assert_eq!(
            resp.cookies,
            vec!["a=1; Path=/".to_owned(), "b=2".to_owned()]
        );
        assert_eq!(resp.body, b"hello");
    }

    #[test]
    fn test_response_structured_defaults() {
        let resp = response(br#"{"statusCode": 200, "body": "ok"}"#, false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.body, b"ok");
        assert!(resp.cookies.is_empty());

        // No body: no content type is added.
        let resp = response(br#"{"statusCode": 204}"#, false);
        assert_eq!(resp.status, 204);
        assert!(resp.headers.is_empty());
        assert!(resp.body.is_empty());
    }

    #[test]
    fn test_response_plain_values() {
        for result in [
            r#"{"message":"hi"}"#,
            r#""a string""#,
            "42",
            "[1,2]",
            "null",
            "  {\"spaced\" : true}  ",
        ] {
            let resp = response(result.as_bytes(), false);
            assert_eq!(resp.status, 200, "{result}");
            assert_eq!(resp.header("content-type"), Some("application/json"));
            assert_eq!(resp.body, result.as_bytes(), "{result}");
            assert!(resp.cookies.is_empty());
        }
    }

    #[test]
    fn test_response_not_json() {
        let resp = response(b"plain text, not json", false);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.body, b"plain text, not json");
    }

    #[test]
    fn test_response_function_error_is_502() {
        let resp = response(br#"{"statusCode": 200, "body": "ok"}"#, true);
        assert_eq!(resp.status, 502);
        assert_eq!(resp.body, br#"{"Message":"Internal Server Error"}"#);
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }

    #[test]
    fn test_response_bad_status_code_is_502() {
        for result in [
            r#"{"statusCode": 99}"#,
            r#"{"statusCode": 600}"#,
            r#"{"statusCode": -1}"#,
            r#"{"statusCode": "200"}"#,
            r#"{"statusCode": 200.5}"#,
            r#"{"statusCode": null}"#,
        ] {
            let resp = response(result.as_bytes(), false);
            assert_eq!(resp.status, 502, "{result}");
            assert_eq!(resp.body, br#"{"Message":"Internal Server Error"}"#);
        }
    }

    #[test]
    fn test_response_invalid_base64_is_502() {
        let resp = response(
            br#"{"statusCode": 200, "body": "not base64!", "isBase64Encoded": true}"#,
            false,
        );
        assert_eq!(resp.status, 502);
    }

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            allow_credentials: credentials,
            allow_headers: vec!["content-type".into(), "x-api-key".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            expose_headers: vec!["x-request-id".into()],
            max_age: 300,
        }
    }

    #[test]
    fn test_cors_preflight_allowed() {
        let h = headers(&[
            ("origin", "https://App.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ]);
        let resp = cors(&["https://app.example.com"], true)
            .preflight("OPTIONS", &h)
            .expect("preflight");
        assert_eq!(resp.status, 204);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://App.example.com")
        );
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("GET,POST")
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("content-type,x-api-key")
        );
        assert_eq!(resp.header("access-control-max-age"), Some("300"));
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            Some("true")
        );
        assert!(resp.body.is_empty());
    }

    #[test]
    fn test_cors_preflight_wildcards() {
        let h = headers(&[
            ("origin", "https://any.example"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "x-a,x-b"),
        ]);
        let mut c = Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            ..Cors::default()
        };
        let resp = c.preflight("OPTIONS", &h).expect("preflight");
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert_eq!(resp.header("access-control-allow-methods"), Some("*"));
        assert_eq!(resp.header("access-control-allow-headers"), Some("x-a,x-b"));
        assert_eq!(resp.header("access-control-max-age"), None);
        assert_eq!(resp.header("access-control-allow-credentials"), None);

        c.allow_credentials = true;
        let resp = c.preflight("OPTIONS", &h).expect("preflight");
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://any.example")
        );
        assert_eq!(resp.header("access-control-allow-methods"), Some("DELETE"));
    }

    #[test]
    fn test_cors_preflight_denied() {
        let c = cors(&["https://app.example.com"], false);
        let allowed = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(c.preflight("OPTIONS", &allowed).is_some());
        // Not OPTIONS.
        assert!(c.preflight("GET", &allowed).is_none());
        // Another origin.
        let other = headers(&[
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(c.preflight("OPTIONS", &other).is_none());
        // No Access-Control-Request-Method: a plain OPTIONS for the function.
        let plain = headers(&[("origin", "https://app.example.com")]);
        assert!(c.preflight("OPTIONS", &plain).is_none());
        // No Origin.
        let no_origin = headers(&[("access-control-request-method", "GET")]);
        assert!(c.preflight("OPTIONS", &no_origin).is_none());
        // No CORS config at all.
        assert!(Cors::default().preflight("OPTIONS", &allowed).is_none());
    }

    fn function_response() -> UrlResponse {
        UrlResponse {
            status: 200,
            headers: vec![
                (
                    "Access-Control-Allow-Origin".into(),
                    "https://stale.example".into(),
                ),
                ("x-own".into(), "kept".into()),
            ],
            cookies: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn test_cors_apply_star_without_credentials() {
        let h = headers(&[("origin", "https://app.example.com")]);
        let mut resp = function_response();
        cors(&["*"], false).apply(&h, &mut resp);
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            resp.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("access-control-allow-origin"))
                .count(),
            1
        );
        assert_eq!(
            resp.header("access-control-expose-headers"),
            Some("x-request-id")
        );
        assert_eq!(resp.header("access-control-allow-credentials"), None);
        assert_eq!(resp.header("x-own"), Some("kept"));
    }

    #[test]
    fn test_cors_apply_star_with_credentials_echoes_origin() {
        let h = headers(&[("origin", "https://app.example.com")]);
        let mut resp = function_response();
        cors(&["*"], true).apply(&h, &mut resp);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            Some("true")
        );
    }

    #[test]
    fn test_cors_apply_leaves_disallowed_origin_alone() {
        let mut resp = function_response();
        let h = headers(&[("origin", "https://evil.example.com")]);
        cors(&["https://app.example.com"], false).apply(&h, &mut resp);
        assert_eq!(resp, function_response());
        cors(&["https://app.example.com"], false).apply(&HeaderMap::new(), &mut resp);
        assert_eq!(resp, function_response());
    }

    #[test]
    fn test_cors_validate_accepts() {
        assert_eq!(Cors::default().validate(), Ok(()));
        let c = Cors {
            allow_origins: vec![
                "*".into(),
                "https://example.com".into(),
                "http://localhost:3000".into(),
                "http://[::1]:8080".into(),
            ],
            allow_methods: vec!["GET".into(), "delete".into(), "*".into()],
            allow_headers: vec!["X-Api-Key".into(), "*".into()],
            max_age: 86_400,
            ..cors(&[], true)
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn test_cors_validate_errors() {
        let bad = |c: Cors| c.validate().expect_err("invalid");
        let base = cors(&["https://example.com"], false);
        for origin in [
            "example.com",
            "https://example.com/",
            "https://example.com/path",
            "https://",
            "https://example.com:99999",
            "https://example.com:",
            "1http://example.com",
            "https://exa mple.com",
        ] {
            let msg = bad(Cors {
                allow_origins: vec![origin.into()],
                ..base.clone()
            });
            assert!(msg.contains("AllowOrigins"), "{origin}: {msg}");
        }
        let msg = bad(Cors {
            allow_methods: vec!["FETCH".into()],
            ..base.clone()
        });
        assert!(
            msg.contains("AllowMethods") && msg.contains("FETCH"),
            "{msg}"
        );
        let msg = bad(Cors {
            max_age: 86_401,
            ..base.clone()
        });
        assert!(msg.contains("MaxAge"), "{msg}");
        let msg = bad(Cors {
            allow_origins: vec!["*".into(); 101],
            ..base.clone()
        });
        assert!(msg.contains("AllowOrigins") && msg.contains("101"), "{msg}");
        let msg = bad(Cors {
            allow_headers: vec!["bad header".into()],
            ..base.clone()
        });
        assert!(msg.contains("AllowHeaders"), "{msg}");
        let msg = bad(Cors {
            expose_headers: vec!["x:y".into()],
            ..base
        });
        assert!(msg.contains("ExposeHeaders"), "{msg}");
    }

    #[test]
    fn test_cors_serde_pascal_case() {
        let c: Cors =
            serde_json::from_str(r#"{"AllowOrigins":["*"],"AllowCredentials":true,"MaxAge":10}"#)
                .expect("parse");
        assert_eq!(
            c,
            Cors {
                allow_origins: vec!["*".into()],
                allow_credentials: true,
                max_age: 10,
                ..Cors::default()
            }
        );
        let v = serde_json::to_value(&c).expect("serialise");
        assert_eq!(v["AllowOrigins"], json!(["*"]));
        assert_eq!(v["ExposeHeaders"], json!([]));
    }
}
