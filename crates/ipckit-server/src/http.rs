//! The HTTP/1.1 request side of a connection, free of I/O so it can be tested over arbitrary
//! bytes: [`Input`] holds what was read and hands out complete requests, in order
//! (pipelining), with what to answer; and the precomputed responses ([`Responses`]).
//!
//! Rules:
//! - A header over `max_header_bytes` without completing is 431 (the buffer is exactly that
//!   big, so the check is "buffer full, no request"). An httparse error is 400. Both close.
//! - A body announced by `Content-Length` is skipped (requests are answered at once; the
//!   body bytes are discarded as they arrive). Repeated `Content-Length` headers must agree,
//!   else 400 (request smuggling). `Transfer-Encoding` is 501, and closes.
//! - Keep-alive: HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes
//!   unless `Connection: keep-alive`.
//! - Only GET and HEAD are served; other methods get 405 (keep-alive kept).
//!
//! Nothing here allocates per request: requests are parsed in place, with a fixed array of
//! headers on the stack.

use std::ops::Range;

/// Most headers a request may have (more is 431).
pub const MAX_HEADERS: usize = 64;

/// The request method, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: a GET without the body.
    Head,
    /// Anything else (405).
    Other,
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Where the target's path (before `?` or `#`) lies in the input buffer; read it with
    /// [`Input::bytes`] before the next [`Input::spare`].
    pub path: Range<usize>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// What [`Input::next_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A complete request, consumed from the buffer.
    Request(Request),
    /// No complete request yet: read more.
    NeedMore,
    /// A request to refuse with this status; the connection then closes.
    Reject(u16),
}

/// A connection's input: a fixed buffer of `max_header_bytes`, filled by reads.
#[derive(Debug)]
pub struct Input {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Body bytes still to discard.
    skip: u64,
}

impl Input {
    /// An empty input whose buffer holds at most `max_header_bytes` (at least 64).
    pub fn new(max_header_bytes: usize) -> Input {
        Input {
            buf: vec![0; max_header_bytes.max(64)].into_boxed_slice(),
            start: 0,
            end: 0,
            skip: 0,
        }
    }

    /// True if no unconsumed byte is buffered (and no body is being skipped).
    pub fn is_empty(&self) -> bool {
        self.start == self.end && self.skip == 0
    }

    /// The free space to read into, after moving unconsumed bytes to the front. Empty when
    /// the buffer is full (then [`Input::next_request`] says `Reject(431)` or has requests to give).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`Input::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes of the buffer (a request's path).
    pub fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// The next complete request, if the buffer holds one.
    pub fn next_request(&mut self) -> Next {
        if self.skip > 0 {
            let n = (self.end - self.start).min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.start += n;
            self.skip -= n as u64;
            if self.skip > 0 {
                return Next::NeedMore;
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return Next::NeedMore;
        }
        let full = self.start == 0 && self.end == self.buf.len();
        let data = &self.buf[self.start..self.end];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(data) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if full {
                    Next::Reject(431)
                } else {
                    Next::NeedMore
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Next::Reject(431),
            Err(_) => return Next::Reject(400),
        };
        let method = match req.method {
            Some("GET") => Method::Get,
            Some("HEAD") => Method::Head,
            _ => Method::Other,
        };
        let http10 = req.version == Some(0);
        let mut keep_alive = !http10;
        // `None` until a `Content-Length` is seen: every later one must repeat its value, in
        // whatever order (`0` then `5` is as ambiguous as `5` then `0`: a proxy in front may
        // take either, and then the two disagree on where the next pipelined request starts).
        let mut length: Option<u64> = None;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                if has_token(h.value, b"close") {
                    keep_alive = false;
                } else if has_token(h.value, b"keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                match (parse_u64(h.value), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Next::Reject(400),
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                return Next::Reject(501);
            }
        }
        let target = req.path.unwrap_or("/").as_bytes();
        let path_len = target
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(target.len());
        // The target is a subslice of `data`: its offset in the buffer.
        let off = target.as_ptr() as usize - self.buf.as_ptr() as usize;
        self.start += len;
        self.skip = length.unwrap_or(0);
        Next::Request(Request {
            method,
            path: off..off + path_len,
            keep_alive,
        })
    }
}

/// True if the comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Decodes `%XX` escapes of a request path into `out`; `None` for a bad escape, a NUL, or a
/// path longer than `out`.
pub fn percent_decode<'a>(path: &[u8], out: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    let mut n = 0;
    while i < path.len() {
        let b = if path[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let hi = hex(*path.get(i + 1)?)?;
            let lo = hex(*path.get(i + 2)?)?;
            i += 3;
            (hi * 16 + lo) as u8
        } else {
            i += 1;
            path[i - 1]
        };
        if b == 0 {
            return None;
        }
        *out.get_mut(n)? = b;
        n += 1;
    }
    Some(&out[..n])
}

/// The `Content-Type` for a file name.
pub fn content_type(path: &[u8]) -> &'static str {
    let ext = path.rsplit(|&b| b == b'.').next().unwrap_or(b"");
    match ext.to_ascii_lowercase().as_slice() {
        b"html" | b"htm" => "text/html",
        b"txt" => "text/plain",
        b"css" => "text/css",
        b"js" => "text/javascript",
        b"json" => "application/json",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The body of `GET /`.
pub const HELLO: &[u8] = b"Hello, World!";

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

/// The precomputed `GET /` responses, with a `Date` header rewritten once per second.
#[derive(Debug)]
pub struct Responses {
    /// `[keep-alive, close]` × full response (HEAD sends the part before the body).
    hello: [Vec<u8>; 2],
    date_at: [usize; 2],
    date: [u8; DATE_LEN],
    second: u64,
}

impl Default for Responses {
    fn default() -> Self {
        Self::new()
    }
}

impl Responses {
    /// The responses, dated now.
    pub fn new() -> Responses {
        let make = |close: bool| {
            let mut v = Vec::new();
            v.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: ipckit\r\nDate: ");
            let at = v.len();
            v.extend_from_slice(&[b' '; DATE_LEN]);
            v.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
            if close {
                v.extend_from_slice(b"Connection: close\r\n");
            }
            v.extend_from_slice(b"\r\n");
            v.extend_from_slice(HELLO);
            (v, at)
        };
        let (k, ka) = make(false);
        let (c, ca) = make(true);
        let mut r = Responses {
            hello: [k, c],
            date_at: [ka, ca],
            date: [b' '; DATE_LEN],
            second: u64::MAX,
        };
        r.set_time(unix_now_secs());
        r
    }

    /// Updates the `Date` headers to `secs` since the epoch (cheap when unchanged).
    pub fn set_time(&mut self, secs: u64) {
        if secs == self.second {
            return;
        }
        self.second = secs;
        self.date = http_date(secs);
        for i in 0..2 {
            let at = self.date_at[i];
            self.hello[i][at..at + DATE_LEN].copy_from_slice(&self.date);
        }
    }

    /// The current `Date` value.
    pub fn date(&self) -> &[u8] {
        &self.date
    }

    /// The `GET /` response (`head`: without the body).
    pub fn hello(&self, keep_alive: bool, head: bool) -> &[u8] {
        let r = &self.hello[usize::from(!keep_alive)];
        if head {
            &r[..r.len() - HELLO.len()]
        } else {
            r
        }
    }

    /// Appends a small response with status `status` and a text body (its reason).
    pub fn error(&self, out: &mut Vec<u8>, status: u16, keep_alive: bool, head: bool) {
        let reason = reason(status);
        self.header(
            out,
            status,
            "text/plain",
            reason.len() as u64 + 1,
            keep_alive,
        );
        if !head {
            out.extend_from_slice(reason.as_bytes());
            out.push(b'\n');
        }
    }

    /// Appends a response header.
    pub fn header(&self, out: &mut Vec<u8>, status: u16, ctype: &str, len: u64, keep: bool) {
        use std::io::Write;
        let _ = write!(
            out,
            "HTTP/1.1 {status} {}\r\nServer: ipckit\r\nDate: ",
            reason(status)
        );
        out.extend_from_slice(&self.date);
        let _ = write!(
            out,
            "\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n"
        );
        if !keep {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An IMF-fixdate for `secs` since the epoch.
pub fn http_date(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar, by eras of
    // 400 years shifted to start in March).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let mut out = [b' '; DATE_LEN];
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3] = b',';
    out[5..7].copy_from_slice(&two(d as u64));
    out[8..11].copy_from_slice(MONTHS[(mo - 1) as usize]);
    let y = y.clamp(0, 9999) as u64;
    out[12..14].copy_from_slice(&two(y / 100));
    out[14..16].copy_from_slice(&two(y % 100));
    out[17..19].copy_from_slice(&two(h));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(m));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(s));
    out[26..29].copy_from_slice(b"GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    fn feed(inp: &mut Input, b: &[u8]) {
        let s = inp.spare();
        s[..b.len()].copy_from_slice(b);
        inp.filled(b.len());
    }

    #[test]
    fn pipelined_and_bodies() {
        let mut inp = Input::new(8192);
        feed(
            &mut inp,
            b"GET /a?x HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcHEAD /b HTTP/1.0\r\n\r\nGET",
        );
        let Next::Request(r) = inp.next_request() else {
            panic!()
        };
        assert_eq!(inp.bytes(r.path.clone()), b"/a");
        assert!(r.keep_alive);
        let Next::Request(r) = inp.next_request() else {
            panic!()
        };
        assert_eq!(r.method, Method::Other);
        let Next::Request(r) = inp.next_request() else {
            panic!()
        };
        assert_eq!((r.method, r.keep_alive), (Method::Head, false));
        assert_eq!(inp.next_request(), Next::NeedMore);
        feed(&mut inp, b" / HTTP/1.1\r\nConnection: close\r\n\r\n");
        let Next::Request(r) = inp.next_request() else {
            panic!()
        };
        assert!(!r.keep_alive);
        assert!(inp.is_empty() || inp.next_request() == Next::NeedMore);
    }

    #[test]
    fn limits() {
        let mut inp = Input::new(100);
        feed(&mut inp, b"GE\x01T / HTTP/1.1\r\n");
        assert_eq!(inp.next_request(), Next::Reject(400));
        let mut inp = Input::new(100);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(100, b'y');
        feed(&mut inp, &big);
        assert_eq!(inp.next_request(), Next::Reject(431));
    }

    #[test]
    fn differing_lengths_are_refused_in_either_order() {
        for (a, b) in [("0", "5"), ("5", "0"), ("3", "4")] {
            let mut inp = Input::new(8192);
            let req = format!(
                "GET /x HTTP/1.1\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\nGET / HTTP/1.1\r\n\r\n"
            );
            feed(&mut inp, req.as_bytes());
            assert_eq!(inp.next_request(), Next::Reject(400), "{a} then {b}");
        }
        let mut inp = Input::new(8192);
        feed(
            &mut inp,
            b"GET /x HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nabGET /y HTTP/1.1\r\n\r\n",
        );
        assert!(matches!(inp.next_request(), Next::Request(_)));
        let Next::Request(r) = inp.next_request() else {
            panic!("the request after an agreed length")
        };
        assert_eq!(inp.bytes(r.path), b"/y");
    }

    #[test]
    fn decoding() {
        let mut b = [0; 64];
        assert_eq!(percent_decode(b"/%2e%2E/x", &mut b), Some(&b"/../x"[..]));
        assert_eq!(percent_decode(b"/%00", &mut b), None);
        assert_eq!(percent_decode(b"/%2", &mut b), None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `data` to an input in chunks cut at `cuts`, the way the worker does (read into
    /// the spare space, then take every complete request), and returns what came out.
    fn run(data: &[u8], cuts: &[usize], max: usize) -> Vec<Next> {
        let mut inp = Input::new(max);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut steps = 0usize;
        for cut in cuts {
            while pos < cut {
                let spare = inp.spare();
                if spare.is_empty() {
                    break;
                }
                let n = spare.len().min(cut - pos);
                spare[..n].copy_from_slice(&data[pos..pos + n]);
                inp.filled(n);
                pos += n;
                loop {
                    steps += 1;
                    // Bounded work: every step consumes input or stops.
                    assert!(steps <= 2 * data.len() + 64, "no progress");
                    match inp.next_request() {
                        Next::NeedMore => break,
                        Next::Reject(s) => {
                            out.push(Next::Reject(s));
                            return out;
                        }
                        Next::Request(r) => {
                            assert!(r.path.end <= max);
                            let _ = inp.bytes(r.path.clone());
                            out.push(Next::Request(r));
                        }
                    }
                }
            }
        }
        out
    }

    fn strip(v: Vec<Next>) -> Vec<(u16, bool)> {
        v.into_iter()
            .map(|n| match n {
                Next::Request(r) => (r.method as u16, r.keep_alive),
                Next::Reject(s) => (s, false),
                Next::NeedMore => (0, false),
            })
            .collect()
    }

    fn requests() -> impl Strategy<Value = Vec<u8>> {
        let one = (
            prop_oneof![Just("GET"), Just("HEAD"), Just("POST")],
            "/[a-z0-9%./]{0,20}",
            prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
            proptest::option::of(prop_oneof![Just("close"), Just("keep-alive")]),
            0usize..20,
        )
            .prop_map(|(m, p, v, conn, body)| {
                let mut s = format!("{m} {p} {v}\r\nHost: x\r\n");
                if let Some(c) = conn {
                    s += &format!("Connection: {c}\r\n");
                }
                if body > 0 {
                    s += &format!("Content-Length: {body}\r\n");
                }
                s += "\r\n";
                let mut b = s.into_bytes();
                b.extend(std::iter::repeat_n(b'z', body));
                b
            });
        proptest::collection::vec(one, 1..8).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes, arbitrary split points: no panic, bounded work, termination.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..3000),
                           cuts in proptest::collection::vec(any::<usize>(), 0..20),
                           max in 64usize..2048) {
            let _ = run(&data, &cuts, max);
        }

        /// Well-formed pipelined requests give the same answers however they are split.
        #[test]
        fn splits_do_not_matter(data in requests(),
                                cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
            let whole = strip(run(&data, &[], 8192));
            let split = strip(run(&data, &cuts, 8192));
            prop_assert_eq!(whole, split);
        }
    }
}
