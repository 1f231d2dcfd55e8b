//! The HTTP front door, as a pure function: a request head in, a [`Route`]
//! out. Kept free of I/O so it can be unit-tested and fuzzed directly.

use crate::constants::HTTP_HEAD_BYTES_MAX;

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /admin/cluster`: the cluster status, for the admin token only.
    ClusterStatus {
        /// The `Authorization` header's value, if any (`Bearer ca1_…`).
        authorization: Option<String>,
    },
    /// `POST /admin/backup`: a backup into the directory named by the
    /// `X-Courier-Backup-Dir` header, for the admin token only
    /// (`crate::backup`).
    Backup {
        /// The `Authorization` header's value, if any (`Bearer ca1_…`).
        authorization: Option<String>,
        /// The `X-Courier-Backup-Dir` header's value, if any.
        dir: Option<String>,
    },
    /// A valid WebSocket upgrade: answer 101 with this `Sec-WebSocket-Accept`,
    /// then treat the bytes after `head_len` as WebSocket data.
    Upgrade {
        /// Value of `Sec-WebSocket-Accept`.
        accept: String,
        /// Length of the request head within the buffer.
        head_len: usize,
    },
    /// A file of the web app (`GET /` without an upgrade, `/app.js`, …).
    Asset(&'static crate::web::Asset),
    /// Answer with this status and plain-text body, then close.
    Refuse {
        /// HTTP status code.
        code: u16,
        /// Body text.
        body: &'static str,
    },
}

/// Whether `buf` holds a complete request head (ends with an empty line).
pub fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Decides what a request head asks for. Never panics on any input.
pub fn route(head: &[u8]) -> Route {
    if head.len() > HTTP_HEAD_BYTES_MAX + 1024 {
        return Route::Refuse {
            code: 431,
            body: "request head too large\n",
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Route::Refuse {
                code: 400,
                body: "incomplete request\n",
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Route::Refuse {
                code: 431,
                body: "too many headers\n",
            }
        }
        Err(_) => {
            return Route::Refuse {
                code: 400,
                body: "malformed request\n",
            }
        }
    };
    let backup = req.path == Some("/admin/backup");
    if req.method != Some("GET") && !(backup && req.method == Some("POST")) {
        return Route::Refuse {
            code: 405,
            body: "only GET (and POST /admin/backup)\n",
        };
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    match req.path.unwrap_or("") {
        "/healthz" => Route::Health,
        "/metrics" => Route::Metrics,
        "/admin/cluster" => Route::ClusterStatus {
            authorization: header("authorization").map(str::to_owned),
        },
        "/admin/backup" if req.method == Some("POST") => Route::Backup {
            authorization: header("authorization").map(str::to_owned),
            dir: header("x-courier-backup-dir").map(str::to_owned),
        },
        "/admin/backup" => Route::Refuse {
            code: 405,
            body: "only POST /admin/backup\n",
        },
        "/" if header("upgrade").is_none() => Route::Asset(&crate::web::INDEX_ASSET),
        "/" | "/ws" => {
            let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let connection = header("connection").is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            });
            let version_ok = header("sec-websocket-version") == Some("13");
            match header("sec-websocket-key") {
                Some(key) if upgrade && connection && version_ok && !key.is_empty() => {
                    Route::Upgrade {
                        accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
                        head_len,
                    }
                }
                _ => Route::Refuse {
                    code: 426,
                    body: "a WebSocket (version 13) upgrade is required here\n",
                },
            }
        }
        path => match crate::web::asset(path) {
            Some(asset) => Route::Asset(asset),
            None => Route::Refuse {
                code: 404,
                body: "not found\n",
            },
        },
    }
}

/// Reason phrase for the status codes we send.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str, expected: Route) {
        assert_eq!(route(head.as_bytes()), expected, "{head:?}");
    }

    #[test]
    fn routes() {
        check("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Route::Health);
        check("GET /metrics HTTP/1.1\r\n\r\n", Route::Metrics);
        check(
            "GET /admin/cluster HTTP/1.1\r\nauthorization:  Bearer ca1_x \r\n\r\n",
            Route::ClusterStatus {
                authorization: Some("Bearer ca1_x".into()),
            },
        );
        check(
            "GET /admin/cluster HTTP/1.1\r\n\r\n",
            Route::ClusterStatus {
                authorization: None,
            },
        );
        check(
            "GET /x HTTP/1.1\r\n\r\n",
            Route::Refuse {
                code: 404,
                body: "not found\n",
            },
        );
        check(
            "POST /healthz HTTP/1.1\r\n\r\n",
            Route::Refuse {
                code: 405,
                body: "only GET (and POST /admin/backup)\n",
            },
        );
        check(
            "POST /admin/backup HTTP/1.1\r\nauthorization: Bearer ca1_x\r\nx-courier-backup-dir: /b\r\n\r\n",
            Route::Backup {
                authorization: Some("Bearer ca1_x".into()),
                dir: Some("/b".into()),
            },
        );
        check(
            "GET /admin/backup HTTP/1.1\r\n\r\n",
            Route::Refuse {
                code: 405,
                body: "only POST /admin/backup\n",
            },
        );
        check(
            "\x00\x01\r\n\r\n",
            Route::Refuse {
                code: 400,
                body: "malformed request\n",
            },
        );
        let ws = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        // The RFC 6455 example key and accept value.
        check(
            ws,
            Route::Upgrade {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
                head_len: ws.len(),
            },
        );
        // A browser opening the server's address gets the web app.
        check(
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n",
            Route::Asset(&crate::web::INDEX_ASSET),
        );
        assert!(matches!(
            route(b"GET /app.js HTTP/1.1\r\n\r\n"),
            Route::Asset(a) if a.content_type.starts_with("text/javascript")
        ));
        let v12 = ws.replace("Version: 13", "Version: 12");
        assert!(matches!(
            route(v12.as_bytes()),
            Route::Refuse { code: 426, .. }
        ));
        let no_key = ws.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert!(matches!(
            route(no_key.as_bytes()),
            Route::Refuse { code: 426, .. }
        ));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        check(
            &format!("GET / HTTP/1.1\r\n{many}\r\n"),
            Route::Refuse {
                code: 431,
                body: "too many headers\n",
            },
        );
    }

    #[test]
    fn data_after_the_head_is_not_part_of_it() {
        let ws = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a2V5\r\n\r\n";
        let mut bytes = ws.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
        assert!(matches!(route(&bytes), Route::Upgrade { head_len, .. } if head_len == ws.len()));
    }
}
