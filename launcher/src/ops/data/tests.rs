use super::*;

#[test]
fn lines_become_items_of_the_owner() {
    let item = item_from_line(
        r#"{"id": "a1", "size": 3, "owner": "bob/x"}"#,
        "alice/collections/p",
    )
    .unwrap();
    assert_eq!(item["object_id"], "a1");
    assert_eq!(item["owner"], "alice/collections/p");
    assert_eq!(item["size"], 3);
    let why = |line: &str| item_from_line(line, "a/b").unwrap_err().to_string();
    assert!(why("[1]").contains("not an object"));
    assert!(why("{}").contains("has no object_id"));
    assert!(why("{x").contains("not JSON"));
    assert!(why(r#"{"id":"j","object_type":"PlusScriptJob"}"#).contains("reserved"));
    assert!(own_owner("photos", "alice").is_err());
    assert!(own_owner("alice//p", "alice").is_err());
    assert!(matches!(
        own_owner("bob/collections/p", "alice"),
        Err(DataError::NotFound(_))
    ));
}

#[tokio::test]
async fn imports_are_idempotent_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = plus_jobs::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let owner = "alice/collections/p";
    let body: String = (0..1203)
        .map(|i| format!("{{\"id\":\"i{i:05}\",\"n\":{i}}}\n"))
        .collect();
    let r = import(&store, "alice", owner, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.imported, 1203);
    let r = import(&store, "alice", owner, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.imported, 1203);
    let mut n = 0;
    let mut start = None;
    loop {
        let page = list(&store, "alice", owner, start.as_deref(), 1000)
            .await
            .unwrap();
        n += page.items.len();
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(n, 1203, "no duplicates after importing twice");
    let err = import(
        &store,
        "alice",
        owner,
        "{\"id\":\"a\"}\n\nnot json\n".as_bytes(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("line 3 is not a valid item: it is not JSON"),
        "{err}"
    );
    assert!(err.contains("The 1 item before it was imported"), "{err}");
    // The line before the bad one is kept.
    let a = store
        .get_object("a")
        .await
        .unwrap()
        .expect("item a was kept");
    assert_eq!(a["owner"], owner);
}

#[tokio::test]
async fn actions_round_trip_and_refuse_other_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = plus_jobs::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let script = Script {
        source: "echo hi".into(),
        ..Script::default()
    };
    let mut params = Map::new();
    params.insert("size".into(), serde_json::json!(2));
    put_action(
        &store,
        "alice",
        "resize",
        script.clone(),
        params,
        Default::default(),
    )
    .await
    .unwrap();
    let a = get_action(&store, "alice", "resize").await.unwrap();
    assert_eq!(a.owner, "alice/actions");
    assert_eq!(a.script.unwrap().source, "echo hi");
    assert!(matches!(
        get_action(&store, "alice", "nope").await,
        Err(DataError::NotFound(_))
    ));
    import(
        &store,
        "alice",
        "alice/collections/p",
        "{\"id\":\"item1\"}".as_bytes(),
    )
    .await
    .unwrap();
    let err = put_action(
        &store,
        "alice",
        "item1",
        script,
        Map::new(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("is a collection item, not an Action"),
        "{err}"
    );
    let missing = |id: &'static str, user: &'static str| {
        let store = &store;
        async move {
            get_action(store, user, id)
                .await
                .unwrap_err()
                .to_string()
                .replace(id, "X")
        }
    };
    let nope = missing("nope", "bob").await;
    assert_eq!(missing("item1", "bob").await, nope, "not an action");
    assert_eq!(missing("resize", "bob").await, nope, "another user's");
}
