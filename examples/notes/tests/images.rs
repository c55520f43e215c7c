//! Images in notes, end to end in headless Chromium (as browser.rs): added by the file
//! input, by a paste and by a drop (synthetic `change`, `ClipboardEvent` and `DragEvent`
//! events carrying a `DataTransfer` of a PNG the page draws on a canvas: WebDriver cannot
//! reach the system's clipboard or drag files, and its file upload needs a file on the
//! driver's disk), shown under the text and as the list's thumbnail (each `<img>` loaded:
//! `naturalWidth > 0`), added while the server is unreachable, then synced to a second app
//! instance, removed, and kept from both sides of a conflict. The API's limits (413, 415)
//! are in the same file, without a browser. Screenshots under
//! `target/tmp/notes-screenshots/images/`; `1-offline-image` is the README's.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::pages::{start_app, write_note, ServerDb};
use support::{screenshot_dir, Browser, Driver};

/// Adds a PNG named `name` (a `color` rectangle) to the open note, `how`: `pick` (the file
/// input), `paste` or `drop`.
async fn add_image(b: &Browser, how: &str, name: &str, color: &str) {
    b.js(
        "const [how, name, color] = arguments;
         const c = document.createElement('canvas'); c.width = 240; c.height = 150;
         const g = c.getContext('2d'); g.fillStyle = color; g.fillRect(0, 0, 240, 150);
         g.fillStyle = '#fff'; g.font = 'bold 28px sans-serif'; g.fillText(name, 16, 85);
         const bin = atob(c.toDataURL('image/png').split(',')[1]);
         const bytes = new Uint8Array(bin.length);
         for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
         const dt = new DataTransfer();
         dt.items.add(new File([bytes], name, { type: 'image/png' }));
         if (how === 'pick') {
           const input = document.querySelector('#image-input');
           input.files = dt.files;
           input.dispatchEvent(new Event('change', { bubbles: true }));
         } else if (how === 'paste') {
           document.querySelector('#body').dispatchEvent(
             new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
         } else {
           document.querySelector('#editor').dispatchEvent(
             new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
         }
         return true;",
        json!([how, name, color]),
    )
    .await;
}

/// Waits until the open note shows exactly the images `names` (in order), each loaded.
async fn wait_images(b: &Browser, css: &str, names: &[&str]) {
    b.wait_for(
        &format!("images {names:?} loaded in {css}"),
        "return [...document.querySelectorAll(arguments[0])].map(i => i.complete && i.naturalWidth > 0 ? i.alt : 'not loaded: ' + i.alt);",
        json!([css]),
        |v| v == &json!(names),
    )
    .await;
}

/// Waits until the list row of `title` has a loaded thumbnail.
async fn wait_thumbnail(b: &Browser, title: &str) {
    b.wait_for(
        &format!("the thumbnail of {title:?}"),
        "for (const li of document.querySelectorAll('#note-list li')) { \
           if (li.querySelector('.title').textContent !== arguments[0]) continue; \
           const t = li.querySelector('img.thumb'); return !!t && t.complete && t.naturalWidth; } \
         return null;",
        json!([title]),
        |v| v.as_u64().is_some_and(|w| w > 0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_added_offline_sync_to_a_second_app_and_a_conflict_keeps_both_sides() {
    let shots = screenshot_dir("images");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerDb::create("notes-images").await;
    let proxy_b = server.proxy().await;
    let (remote_a, remote_b) = (
        server.app_remote(&server.proxy),
        server.app_remote(&proxy_b),
    );
    let app_a = start_app(dir.path(), "a", Some(&remote_a));
    let app_b = start_app(dir.path(), "b", Some(&remote_b));
    let driver = Driver::start().await;
    let a = driver.browser("A", &shots).await;
    let b = driver.browser("B", &shots).await;
    a.goto(&app_a.url).await;
    b.goto(&app_b.url).await;
    a.wait_text("#sync-state", "Synced").await;
    b.wait_text("#sync-state", "Synced").await;

    // Offline, A writes a note and adds images three ways, then removes one.
    server.proxy.set_refusing(true);
    a.wait_text("#sync-state", "Offline").await;
    write_note(&a, "Holiday", "The beach, and the boat.").await;
    add_image(&a, "pick", "beach.png", "#2f6f5e").await;
    wait_images(&a, "#images img", &["beach.png"]).await;
    add_image(&a, "paste", "pasted.png", "#b26a00").await;
    wait_images(&a, "#images img", &["beach.png", "pasted.png"]).await;
    add_image(&a, "drop", "boat.png", "#1d4f91").await;
    wait_images(&a, "#images img", &["beach.png", "pasted.png", "boat.png"]).await;
    a.click("#images figure[data-name='pasted.png'] .remove-image")
        .await;
    wait_images(&a, "#images img", &["beach.png", "boat.png"]).await;
    wait_thumbnail(&a, "Holiday").await;
    a.wait_badge("Holiday", "waiting to upload").await;
    a.screenshot("1-offline-image").await;
    assert!(
        !server
            .server_docs()
            .await
            .iter()
            .any(|d| d["title"] == "Holiday"),
        "the server was reachable: the test proved nothing"
    );

    // Online again: B, another store on the same server, shows the images.
    server.proxy.set_refusing(false);
    a.wait_badge("Holiday", "synced").await;
    b.wait_badge("Holiday", "synced").await;
    wait_thumbnail(&b, "Holiday").await;
    b.open_note("Holiday").await;
    wait_images(&b, "#images img", &["beach.png", "boat.png"]).await;
    b.screenshot("2-synced-to-b").await;

    // Apart, each adds an image: a conflict whose merge keeps both sides' images.
    server.proxy.set_refusing(true);
    proxy_b.set_refusing(true);
    a.wait_text("#sync-state", "Offline").await;
    b.wait_text("#sync-state", "Offline").await;
    add_image(&a, "pick", "from-a.png", "#c62828").await;
    wait_images(&a, "#images img", &["beach.png", "boat.png", "from-a.png"]).await;
    add_image(&b, "pick", "from-b.png", "#6a1b9a").await;
    wait_images(&b, "#images img", &["beach.png", "boat.png", "from-b.png"]).await;
    server.proxy.set_refusing(false);
    proxy_b.set_refusing(false);
    a.wait_badge("Holiday", "conflict").await;
    a.open_note("Holiday").await;
    a.wait_for(
        "each side's images in the conflict view",
        "return [...document.querySelectorAll('#versions .version')].map(v => \
           [...v.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).map(i => i.alt).sort().join(',')).sort();",
        json!([]),
        |v| {
            v == &json!([
                "beach.png,boat.png,from-a.png",
                "beach.png,boat.png,from-b.png"
            ])
        },
    )
    .await;
    a.screenshot("3-conflict-images").await;
    a.click("#save-merge").await;
    a.wait_text("#editor-message", "Conflict resolved.").await;
    let union = ["beach.png", "boat.png", "from-a.png", "from-b.png"];
    a.wait_for(
        "the union of the images in A",
        "return [...document.querySelectorAll('#images img')].filter(i => i.complete && i.naturalWidth > 0).map(i => i.alt).sort();",
        json!([]),
        |v| v == &json!(union),
    )
    .await;
    a.wait_badge("Holiday", "synced").await;
    b.wait_badge("Holiday", "synced").await;
    b.open_note("Holiday").await;
    b.wait_for(
        "the union of the images in B",
        "return [...document.querySelectorAll('#images img')].filter(i => i.complete && i.naturalWidth > 0).map(i => i.alt).sort();",
        json!([]),
        |v| v == &json!(union),
    )
    .await;
    a.screenshot("4-merged").await;
    let id = server
        .server_docs()
        .await
        .into_iter()
        .find(|d| d["title"] == "Holiday")
        .unwrap()["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = server.server_doc(&id).await;
    assert!(doc.get("_conflicts").is_none(), "{doc}");
    let mut names: Vec<&str> = doc["_attachments"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, union);
}

#[tokio::test]
async fn image_endpoints_refuse_other_types_and_too_large_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let app = settee_notes::App::start(settee_notes::AppOptions {
        store: dir.path().join("store"),
        remote: None,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = settee_notes::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/notes"))
        .json(&json!({"title": "Pictures"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, rev) = (
        created["note"]["id"].as_str().unwrap().to_owned(),
        created["note"]["rev"].as_str().unwrap().to_owned(),
    );
    let url = |name: &str, rev: &str| format!("{base}/api/notes/{id}/images/{name}?rev={rev}");
    let before = app.db().info().await.unwrap().update_seq;

    let html = http
        .put(url("x.html", &rev))
        .header("content-type", "text/html")
        .body("<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = html.json().await.unwrap();
    assert_eq!(v["error"], "bad_content_type", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("only images"), "{v}");

    let big = vec![0u8; settee_notes::MAX_IMAGE_BYTES as usize + 1];
    let too_big = http
        .put(url("big.png", &rev))
        .header("content-type", "image/png")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = too_big.json().await.unwrap();
    assert_eq!(v["error"], "attachment_too_large", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("20 MB"), "{v}");
    assert_eq!(app.db().info().await.unwrap().update_seq, before);

    // An image goes in, reads back byte for byte, and goes.
    let put = http
        .put(url("dot.png", &rev))
        .header("content-type", "image/png")
        .body(&b"\x89PNG fake"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let v: Value = put.json().await.unwrap();
    assert_eq!(v["note"]["images"][0]["name"], "dot.png", "{v}");
    let rev = v["note"]["rev"].as_str().unwrap().to_owned();
    let got = http
        .get(format!("{base}/api/notes/{id}/images/dot.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "image/png");
    assert!(got.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(&got.bytes().await.unwrap()[..], b"\x89PNG fake");
    let list: Value = http
        .get(format!("{base}/api/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["notes"][0]["image"]["name"], "dot.png", "{list}");
    let gone = http
        .delete(format!("{base}/api/notes/{id}/images/dot.png?rev={rev}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::OK);
    let v: Value = gone.json().await.unwrap();
    assert_eq!(v["note"]["images"], json!([]), "{v}");
    let missing = http
        .get(format!("{base}/api/notes/{id}/images/dot.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
