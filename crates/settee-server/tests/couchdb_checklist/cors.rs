//! couchdb_cors_tests.erl and chttpd_cors_test.erl (the shared CouchDB has CORS off, so
//! Settee alone, against what those tests expect).

use super::*;

/// CouchDB's `SUPPORTED_METHODS`, its default `[cors] methods`.
const SUPPORTED_METHODS: &str = "CONNECT, COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT, TRACE";

async fn cors_serve(origins: &[&str], credentials: bool) -> TestServe {
    let origins = origins.iter().map(|o| (*o).to_owned()).collect();
    let cors = Cors {
        origins,
        credentials,
        ..Default::default()
    };
    serve_with(|o| o.cors = Some(cors)).await
}

/// `OPTIONS path` as `who` with `Origin`, and `Access-Control-Request-Method` (unless
/// empty) and `-Headers` if given.
async fn options(
    s: &Srv,
    who: Who<'_>,
    path: &str,
    origin: &str,
    method: &str,
    asked: Option<&str>,
) -> Answer {
    let mut headers = vec![("Origin", origin)];
    if !method.is_empty() {
        headers.push(("Access-Control-Request-Method", method));
    }
    if let Some(h) = asked {
        headers.push(("Access-Control-Request-Headers", h));
    }
    s.send(who, Method::OPTIONS, path, &headers, None).await
}

/// The eunit CORS tests with `origins = http://example.com`, credentials off: simple and
/// preflight requests on the server and a database, with and without credentials;
/// origins that differ by port, scheme or case get nothing; methods and request headers
/// CouchDB does not allow end the preflight; attachments, ranges and `If-None-Match`
/// through CORS (COUCHDB-1689, COUCHDB-1697); then an origin with a port and credentials
/// on, and `*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_as_couchdb_eunit_tests() {
    const ORIGIN: &str = "http://example.com";
    let serve = cors_serve(&[ORIGIN], false).await;
    let s = Srv::settee(&serve, &run_tag());
    let db = s.create_db("cors").await;
    let allow_origin = |a: &Answer| a.header("access-control-allow-origin").map(str::to_owned);
    let exposed_by_couchdb = [
        "accept-ranges",
        "cache-control",
        "content-type",
        "etag",
        "server",
        "x-couch-request-id",
        "x-couch-update-newrev",
        "x-couchdb-body-time",
    ];
    for path in ["/".to_owned(), format!("/{db}")] {
        for who in [Who::Anonymous, Who::Admin] {
            // should_make_simple_request, should_make_origin_request_with_auth
            let a = s
                .send(who, Method::GET, &path, &[("Origin", ORIGIN)], None)
                .await;
            assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN), "{path}");
            assert_eq!(a.header("access-control-allow-credentials"), None, "{path}");
            let mut exposed: Vec<&str> = a
                .header("access-control-expose-headers")
                .unwrap()
                .split(", ")
                .collect();
            exposed.sort_unstable();
            assert_eq!(exposed, exposed_by_couchdb, "{path}");
            // should_make_preflight_request, should_make_preflight_request_with_auth
            let a = options(&s, who, &path, ORIGIN, "GET", None).await;
            assert_eq!(a.status, 204, "{path}");
            assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN));
            assert_eq!(
                a.header("access-control-allow-methods"),
                Some(SUPPORTED_METHODS)
            );
            assert_eq!(a.header("access-control-allow-headers"), Some(""));
            assert_eq!(a.header("access-control-max-age"), Some("600"));
            assert_eq!(a.header("access-control-allow-credentials"), None);
        }
        // Origins not listed, to the letter: another host, port, scheme or case.
        for other in [
            "http://127.0.0.1",
            "http://example.com:5984",
            "https://example.com",
            "http://ExAmPlE.CoM",
        ] {
            let a = options(&s, Who::Anonymous, &path, other, "GET", None).await;
            assert_eq!(allow_origin(&a), None, "{other}");
            let a = s
                .send(Who::Admin, Method::GET, &path, &[("Origin", other)], None)
                .await;
            assert_eq!(allow_origin(&a), None, "{other}");
        }
    }
    // test_good_headers_preflight_request, test_bad_headers_preflight_request, and a
    // method CouchDB does not list.
    let a = options(
        &s,
        Who::Anonymous,
        "/",
        ORIGIN,
        "GET",
        Some("accept-language"),
    )
    .await;
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("accept-language")
    );
    let asked = "Content-Type, X-Requested-With";
    let a = options(&s, Who::Anonymous, "/", ORIGIN, "POST", Some(asked)).await;
    assert_eq!(
        (a.status, a.header("access-control-allow-headers")),
        (204, Some(asked))
    );
    for (method, asked) in [("GET", Some("X-Not-An-Allowed-Headers")), ("PATCH", None)] {
        let a = options(&s, Who::Anonymous, "/", ORIGIN, method, asked).await;
        assert_ne!(a.status, 204, "{method} {asked:?}");
        assert_eq!(
            a.header("access-control-allow-methods"),
            None,
            "{method} {asked:?}"
        );
    }
    // COUCHDB-1689 and COUCHDB-1697.
    let att = format!("/{db}/doc/file.txt");
    let text = [("Content-Type", "text/plain")];
    let a = s
        .send(
            Who::Admin,
            Method::PUT,
            &att,
            &text,
            Some("hello, couch!".into()),
        )
        .await;
    s.check("an attachment", &a, 201, "");
    let etag = a.header("etag").unwrap().to_owned();
    let with = |name, value| [("Origin", ORIGIN), (name, value)];
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &format!("/{db}/doc?attachments=true"),
            &[("Origin", ORIGIN)],
            None,
        )
        .await;
    s.check("a document with its attachments", &a, 200, "");
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &att,
            &with("Range", "bytes=0-6"),
            None,
        )
        .await;
    s.check("a range", &a, 206, "");
    assert_eq!(allow_origin(&a).as_deref(), Some(ORIGIN));
    let a = s
        .send(
            Who::Admin,
            Method::GET,
            &format!("/{db}/doc"),
            &with("If-None-Match", &etag),
            None,
        )
        .await;
    s.check("If-None-Match", &a, 304, "");

    // should_make_prefligh_request_with_port / _with_scheme, with credentials on
    // (should_make_request_with_credentials: also on an `OPTIONS` that is no preflight).
    const WITH_PORT: &str = "https://example.com:5984";
    let serve = cors_serve(&[WITH_PORT], true).await;
    let s = Srv::settee(&serve, "");
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "GET", None).await;
    assert_eq!(allow_origin(&a).as_deref(), Some(WITH_PORT));
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "", None).await;
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
    let a = s
        .send(
            Who::Anonymous,
            Method::GET,
            "/",
            &[("Origin", WITH_PORT)],
            None,
        )
        .await;
    assert_eq!(a.header("access-control-allow-credentials"), Some("true"));

    // should_make_prefligh_request_with_wildcard_origin: the origin is echoed. With
    // credentials configured CouchDB would send them to any origin through `*`; Settee
    // never does (issue 20, finding 7).
    let serve = cors_serve(&["*"], true).await;
    let s = Srv::settee(&serve, "");
    let a = options(&s, Who::Anonymous, "/", WITH_PORT, "GET", None).await;
    assert_eq!(
        (a.status, allow_origin(&a).as_deref()),
        (204, Some(WITH_PORT))
    );
    assert_eq!(a.header("access-control-allow-credentials"), None);
    let a = s
        .send(
            Who::Anonymous,
            Method::GET,
            "/",
            &[("Origin", "null")],
            None,
        )
        .await;
    assert_eq!(allow_origin(&a).as_deref(), Some("null"));
    assert_eq!(a.header("access-control-allow-credentials"), None);
}
