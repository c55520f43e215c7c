//! `settee serve` over HTTP: attachments (inline, multipart, standalone with `Range`),
//! authentication (basic, cookie, `_security`), CORS and the request limits, each checked
//! against CouchDB's answers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServe, ADMIN, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use settee_server::{Cors, RequestLimits, Server, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_attachment_put_get_range_delete() {
    let serve = TestServe::start().await;
    serve.create_db("a").await;
    let body: Vec<u8> = (0..=255u8).collect();
    let res = serve
        .req(Method::PUT, "/a/doc/dir%2Ffile.bin")
        .header("Content-Type", "application/x-thing")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let rev1 = created["rev"].as_str().unwrap().to_owned();
    assert!(rev1.starts_with("1-"));

    let res = serve
        .req(Method::GET, "/a/doc/dir%2Ffile.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-thing");
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.bytes().await.unwrap().to_vec(), body);

    let res = serve
        .req(Method::GET, "/a/doc/dir%2Ffile.bin")
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], "bytes 10-19/256");
    assert_eq!(res.bytes().await.unwrap().to_vec(), body[10..20].to_vec());
    let res = serve
        .req(Method::GET, "/a/doc/dir%2Ffile.bin")
        .header("Range", "bytes=300-400")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);

    // A second attachment needs the current rev; a stale one is a conflict.
    let res = serve
        .req(Method::PUT, &format!("/a/doc/two.txt?rev={rev1}"))
        .header("Content-Type", "text/plain")
        .body("two")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let rev2 = res.json::<Value>().await.unwrap()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = serve
        .req(Method::PUT, &format!("/a/doc/three.txt?rev={rev1}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    let (s, doc) = serve.call(Method::GET, "/a/doc", None).await;
    assert_eq!(s, 200);
    let atts = doc["_attachments"].as_object().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts["dir/file.bin"]["stub"], true);
    assert_eq!(atts["dir/file.bin"]["length"], 256);
    assert_eq!(atts["dir/file.bin"]["revpos"], 1);
    assert_eq!(atts["two.txt"]["revpos"], 2);

    let (s, b) = serve
        .call(Method::DELETE, &format!("/a/doc/two.txt?rev={rev2}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = serve.call(Method::GET, "/a/doc/two.txt", None).await;
    assert_eq!(
        (s, b),
        (
            404,
            json!({"error": "not_found", "reason": "Document is missing attachment"})
        )
    );
    // The old revision still has it.
    let res = serve
        .req(Method::GET, &format!("/a/doc/two.txt?rev={rev2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_related_put_and_get_and_open_revs_mixed() {
    let serve = TestServe::start().await;
    serve.create_db("m").await;
    let doc = json!({"_id": "mp", "title": "x", "_attachments": {
        "a.txt": {"content_type": "text/plain", "follows": true, "length": 5},
        "b.txt": {"content_type": "text/plain", "follows": true, "length": 3}}});
    let body = format!(
        "--XYZ\r\nContent-Type: application/json\r\n\r\n{doc}\r\n--XYZ\r\n\r\nhello\r\n--XYZ\r\n\r\nbye\r\n--XYZ--"
    );
    let res = serve
        .req(Method::PUT, "/m/mp")
        .header("Content-Type", "multipart/related; boundary=\"XYZ\"")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = serve.req(Method::GET, "/m/mp/b.txt").send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "bye");

    let res = serve
        .req(Method::GET, "/m/mp?attachments=true")
        .header("Accept", "multipart/related")
        .send()
        .await
        .unwrap();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/related"), "{ct}");
    let text = res.text().await.unwrap();
    assert!(text.contains("\"follows\":true") && text.contains("hello") && text.contains("bye"));

    let res = serve
        .req(Method::GET, "/m/mp?open_revs=all&attachments=true")
        .header("Accept", "multipart/mixed")
        .send()
        .await
        .unwrap();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed"), "{ct}");
    let text = res.text().await.unwrap();
    assert!(text.contains("multipart/related") && text.contains("hello"));

    // _bulk_get as multipart/mixed: a part per document, attachments as related parts.
    let res = serve
        .req(Method::POST, "/m/_bulk_get?revs=true&attachments=true")
        .header("Accept", "multipart/mixed")
        .json(&json!({"docs": [{"id": "mp"}, {"id": "nope"}]}))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("multipart/mixed"));
    let text = res.text().await.unwrap();
    assert!(text.contains("X-Doc-Id: mp") && text.contains("hello") && text.contains("bye"));
    assert!(text.contains("error=\"true\"") && text.contains("\"not_found\""));

    // Malformed multipart changes nothing.
    let res = serve
        .req(Method::PUT, "/m/bad")
        .header("Content-Type", "multipart/related; boundary=Q")
        .body("--Q\r\nContent-Type: application/json\r\n\r\n{\"_attachments\":{\"x\":{\"follows\":true}}}\r\n--Q--")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(serve.call(Method::GET, "/m/bad", None).await.0, 404);

    // Inline base64 attachments, and a document read with them inline.
    let (s, b) = serve
        .call(Method::PUT, "/m/inline", Some(json!({"_attachments": {"i.txt": {"content_type": "text/plain", "data": "aW5saW5l"}}})))
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, d) = serve
        .call(Method::GET, "/m/inline?attachments=true", None)
        .await;
    assert_eq!(d["_attachments"]["i.txt"]["data"], "aW5saW5l");
    assert_eq!(
        d["_attachments"]["i.txt"]["digest"],
        "md5-A/2tFVt1SIhFhMfDmwxc0g=="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_basic_cookie_and_security() {
    let serve = TestServe::start().await;
    serve.create_db("s").await;
    let anon = reqwest::Client::new();
    let url = serve.url();

    // Anonymous: the welcome page yes, the database (admins-only by default) no.
    assert_eq!(
        anon.get(format!("{url}/")).send().await.unwrap().status(),
        200
    );
    let res = anon.get(format!("{url}/s")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "unauthorized", "reason": "You are not authorized to access this db."})
    );
    let res = anon.get(format!("{url}/_all_dbs")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // A wrong password is refused, whatever the resource.
    let res = anon
        .get(format!("{url}/"))
        .basic_auth(ADMIN, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["reason"],
        "Name or password is incorrect."
    );

    // Cookie session: log in, use it, ask who we are, log out.
    let res = anon
        .post(format!("{url}/_session"))
        .json(&json!({"name": ADMIN, "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = anon
        .post(format!("{url}/_session"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("name={ADMIN}&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("AuthSession=") && cookie.contains("HttpOnly"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"ok": true, "name": ADMIN, "roles": ["_admin"]})
    );
    let res = anon
        .get(format!("{url}/s"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let who: Value = anon
        .get(format!("{url}/_session"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["userCtx"], json!({"name": ADMIN, "roles": ["_admin"]}));
    assert_eq!(who["info"]["authenticated"], "cookie");
    // A forged cookie is anonymous.
    let res = anon
        .get(format!("{url}/s"))
        .header("Cookie", "AuthSession=YWRtaW46MDA6MDA")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // _security: the default is admins only; an empty object opens the database; members
    // by name close it again for anyone else.
    let (_, sec) = serve.call(Method::GET, "/s/_security", None).await;
    assert_eq!(
        sec,
        json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}})
    );
    let res = anon
        .put(format!("{url}/s/_security"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "anonymous may not change _security");
    assert_eq!(
        serve
            .call(Method::PUT, "/s/_security", Some(json!({})))
            .await
            .0,
        200
    );
    let res = anon
        .put(format!("{url}/s/open"))
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = anon
        .put(format!("{url}/s/_design/x"))
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "design documents need a db admin");
    let (s, _) = serve
        .call(
            Method::PUT,
            "/s/_security",
            Some(json!({"members": {"names": ["bob"]}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        anon.get(format!("{url}/s/open"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (s, b) = serve
        .call(
            Method::PUT,
            "/s/_security",
            Some(json!({"members": {"names": "bob"}})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    // Creating and deleting databases is for admins.
    assert_eq!(
        anon.put(format!("{url}/new"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        anon.delete(format!("{url}/s"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        cors: Some(Cors {
            origins: vec!["https://app.example".into()],
            ..Default::default()
        }),
        limits: RequestLimits {
            max_body: 1024,
            max_header_bytes: 8192,
            max_headers: 20,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let res = http
        .request(Method::OPTIONS, format!("{url}/db/doc"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "CouchDB answers a preflight with 204");
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    let res = http
        .get(format!("{url}/"))
        .header("Origin", "https://other.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = http
        .get(format!("{url}/"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    // No admin (loopback): everyone is an admin.
    assert_eq!(
        http.put(format!("{url}/db")).send().await.unwrap().status(),
        201
    );
    let big = json!({"x": "y".repeat(2000)});
    let res = http
        .put(format!("{url}/db/big"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "too_large");
    assert_eq!(
        http.get(format!("{url}/db/big"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let mut req = http.get(format!("{url}/"));
    for i in 0..50 {
        req = req.header(format!("x-h{i}"), "v");
    }
    // Too many headers: hyper refuses the request (431) or drops the connection.
    match req.send().await {
        Ok(res) => assert_eq!(res.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_without_admin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Server::start(ServerOptions {
        bind: "0.0.0.0:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.name(), "bad_request");
    assert!(err.to_string().contains("--admin"), "{err}");
}

/// Numbers come back as the same doubles (PouchDB compares a document it wrote with what the
/// server returns): `0.45864799626588604` once came back one unit in the last place off,
/// `0.4586479962658861`, which a replicated conflict then carried into another database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_round_trip_to_the_same_double() {
    let serve = TestServe::start().await;
    serve.create_db("n").await;
    let numbers = [
        "0.45864799626588604",
        "0.30000000000000004",
        "2.2250738585072014e-308",
        "1.7976931348623157e308",
        "5e-324",
        "0.1",
        "123456789012345680000",
    ];
    let body = format!(r#"{{"_id": "x", "v": [{}]}}"#, numbers.join(", "));
    let res = serve
        .req(Method::PUT, "/n/x")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let text = serve
        .req(Method::GET, "/n/x")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = text.find("\"v\":[").unwrap() + 5;
    let list = &text[start..start + text[start..].find(']').unwrap()];
    let got: Vec<f64> = list.split(',').map(|n| n.trim().parse().unwrap()).collect();
    let want: Vec<f64> = numbers.iter().map(|n| n.parse().unwrap()).collect();
    // Rust's `str::parse::<f64>` rounds correctly; compare the bits.
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want), "sent {numbers:?}, got back {list}");
}

/// Issue 20, finding 5: DNS rebinding. Without `--admin` every request is an admin, so a web
/// page whose own name resolves to 127.0.0.1 could delete a store; the admin party now
/// answers only requests that name the server by a loopback name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_the_admin_party_answers_only_loopback_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let url = format!("http://{addr}");
    let http = reqwest::Client::new();
    assert_eq!(
        http.put(format!("{url}/db")).send().await.unwrap().status(),
        201
    );
    let res = http
        .delete(format!("{url}/db"))
        .header("Host", format!("rebound.example:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["reason"].as_str().unwrap().contains("--admin"),
        "{body}"
    );
    assert_eq!(
        http.get(format!("{url}/db")).send().await.unwrap().status(),
        200
    );
    for host in [format!("localhost:{}", addr.port()), addr.to_string()] {
        let res = http
            .get(format!("{url}/db"))
            .header("Host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{host}");
    }
    assert_eq!(
        http.delete(format!("{url}/db"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}
