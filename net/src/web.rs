//! The web app's files, embedded in the binary so that `courierd` alone
//! serves a working chat at `http://HOST:PORT/` (a plain `GET /` without a
//! WebSocket upgrade). The sources live in `tools/web/app` and are built
//! with Node into `tools/web/app/dist` (committed; `scripts/build-web`);
//! running needs no Node.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// `Content-Type` to answer with.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// `index.html`, the answer to a plain `GET /`.
pub const INDEX_ASSET: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../tools/web/app/dist/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../../tools/web/app/dist/app.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("../../tools/web/app/dist/app.css"),
};

/// The file for a request path (its query string ignored), if the app has one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path {
        "/" | "/index.html" => Some(&INDEX_ASSET),
        "/app.js" => Some(&SCRIPT),
        "/app.css" => Some(&STYLE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_and_its_files_are_found_by_path() {
        assert!(asset("/").is_some_and(|a| a.body.contains("/app.js")));
        assert_eq!(asset("/?token=x"), asset("/"));
        assert!(asset("/app.js").is_some_and(|a| a.content_type.starts_with("text/javascript")));
        assert!(asset("/app.css").is_some());
        assert_eq!(asset("/nope"), None);
    }
}
