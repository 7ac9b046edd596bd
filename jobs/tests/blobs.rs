//! The blob stores: a log larger than the multipart threshold goes up to S3
//! (in `moto_server`) in parts and comes back byte for byte; a byte range of
//! a file is stored as exactly those bytes, and a refused one leaves
//! nothing behind.

use plus_jobs::{
    backend::AwsConfig, blob::s3::MULTIPART_THRESHOLD, Backend, BackendConfig, BlobStore,
};
use plus_testkit::{FaultProxy, Moto};

async fn round_trip(blobs: &dyn BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.txt");
    let size = MULTIPART_THRESHOLD as usize + 5 * 1024 * 1024 + 17;
    let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    blobs
        .put_file("jobs/j/log.txt", &path, "text/plain")
        .await
        .unwrap();
    let back = blobs.get_bytes("jobs/j/log.txt").await.unwrap().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the log came back byte for byte");
    assert_eq!(blobs.list("jobs/j/").await.unwrap(), vec!["jobs/j/log.txt"]);
    assert_eq!(blobs.get_bytes("jobs/j/missing").await.unwrap(), None);
    // A size is answered without reading the blob.
    assert_eq!(
        blobs.size("jobs/j/log.txt").await.unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(blobs.size("jobs/j/missing").await.unwrap(), None);

    // A byte range of a file (a results part) is stored as exactly those
    // bytes; a range past the end of the file is an error, not a short blob.
    blobs
        .put_file_range(
            "jobs/j/part.jsonl",
            &path,
            1000..4000,
            "application/x-ndjson",
        )
        .await
        .unwrap();
    let part = blobs.get_bytes("jobs/j/part.jsonl").await.unwrap().unwrap();
    assert_eq!(part, data[1000..4000]);
    let past = size as u64 + 10;
    assert!(blobs
        .put_file_range(
            "jobs/j/bad.jsonl",
            &path,
            past - 20..past,
            "application/x-ndjson"
        )
        .await
        .is_err());
    assert_eq!(blobs.get_bytes("jobs/j/bad.jsonl").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_log_goes_to_s3_in_parts_and_comes_back_whole() {
    // Through the test proxy: the emulator names CompleteMultipartUpload's
    // answer differently from S3, and the proxy puts S3's name back.
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let aws = AwsConfig {
        endpoint_url: Some(proxy.endpoint.clone()),
        ..aws
    };
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    round_trip(backend.blobs.as_ref()).await;
    // The log went up in parts: CreateMultipartUpload and
    // CompleteMultipartUpload (POSTs) around several UploadPart PUTs, not
    // as one PutObject.
    let seen = proxy.seen();
    let puts = seen.iter().filter(|t| *t == "S3:PUT").count();
    let posts = seen.iter().filter(|t| *t == "S3:POST").count();
    assert!(puts >= 3, "{seen:?}");
    assert_eq!(posts, 2, "{seen:?}");
    // S3's UploadPart model: a part's checksum must use the algorithm its
    // upload declared on CreateMultipartUpload (the emulator does not check).
    let requests = proxy.s3_requests();
    let create = requests
        .iter()
        .find(|r| r.method == "POST" && r.path_and_query.ends_with("?uploads"))
        .expect("a CreateMultipartUpload request");
    assert_eq!(
        create.header("x-amz-checksum-algorithm"),
        Some("CRC32"),
        "{create:?}"
    );
    let parts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path_and_query.contains("partNumber="))
        .collect();
    assert!(parts.len() >= 2, "{requests:?}");
    for part in parts {
        let declared = part.header("x-amz-sdk-checksum-algorithm");
        let sent = part.header("x-amz-checksum-crc32").is_some()
            || part
                .header("x-amz-trailer")
                .is_some_and(|t| t.contains("x-amz-checksum-crc32"));
        assert!(
            declared.is_none_or(|a| a == "CRC32") && sent,
            "each part carries a CRC32 checksum: {part:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_log_round_trips_in_the_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let backend = plus_testkit::local_backend(dir.path()).await;
    round_trip(backend.blobs.as_ref()).await;
    // The refused range left no temporary file behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
