//! Blobs in the primary S3 bucket.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart},
    Client,
};

use super::{BlobError, BlobStore};

/// Files larger than this go up as a multipart upload.
pub const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// The size of each part of a multipart upload (S3 allows 10,000 parts, so
/// this covers logs up to 160 GiB).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// The S3 adapter of [`BlobStore`].
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    /// Blobs in `bucket`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn classify<E>(&self, err: SdkError<E, HttpResponse>, op: &str, key: &str) -> BlobError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(err, op, &self.bucket, key)
    }

    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        content_type: &str,
    ) -> Result<(), BlobError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            // The parts carry CRC32 checksums: S3 requires the upload to
            // declare the same algorithm when it is created.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| self.classify(e, "CreateMultipartUpload", key))?;
        let upload_id = upload.upload_id.unwrap_or_default();
        let result = self.upload_parts(key, path, size, &upload_id).await;
        match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(drop)
                .map_err(|e| self.classify(e, "CompleteMultipartUpload", key)),
            Err(e) => {
                // Leave no half upload behind to be billed for.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, BlobError> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let length = PART_SIZE.min(size - offset);
            let body = range_body(path, offset..offset + length).await?;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(body)
                .send()
                .await
                .map_err(|e| self.classify(e, "UploadPart", key))?;
            parts.push(
                // The SDK checksums each part; completing must name the
                // same checksums, or S3 refuses the upload.
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .set_checksum_crc32(out.checksum_crc32)
                    .set_checksum_crc32_c(out.checksum_crc32_c)
                    .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                    .set_checksum_sha1(out.checksum_sha1)
                    .set_checksum_sha256(out.checksum_sha256)
                    .build(),
            );
            offset += length;
            number += 1;
        }
        Ok(parts)
    }
}

impl S3Blobs {
    /// One PutObject of `body` at `key`.
    async fn put_body(
        &self,
        key: &str,
        body: ByteStream,
        content_type: &str,
    ) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.classify(e, "PutObject", key))
    }
}

/// A request body streamed from bytes `range` of the file at `path`.
/// Turns an SDK error into a [`BlobError`] that says what to do; the SDK's
/// error is kept as the cause. Throttling, a 5xx answer (whether or not it
/// names an error code), a timeout and a dropped connection are transient;
/// anything else S3 said, or a request that could not be built, is not.
fn classify<E>(err: SdkError<E, HttpResponse>, op: &str, bucket: &str, key: &str) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (transient, message) = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status();
            let server_error = status.is_server_error();
            match e.code() {
                Some("NoSuchBucket") => (false, format!(
                    "S3 bucket {bucket} does not exist: create it with scripts/setup.sh or fix PRIMARY_BUCKET"
                )),
                Some(code @ ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => (false, format!(
                    "{op} s3://{bucket}/{key} was denied ({code}): give the task role access to the bucket"
                )),
                Some(code @ ("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout")) => {
                    (true, format!("{op} s3://{bucket}/{key}: {code}: {}", e.message().unwrap_or("")))
                }
                Some(code) => (server_error, format!(
                    "{op} s3://{bucket}/{key} failed (HTTP {}): {code}: {}",
                    status.as_u16(),
                    e.message().unwrap_or("")
                )),
                None => (server_error, format!(
                    "{op} s3://{bucket}/{key} failed with HTTP {} and no error code",
                    status.as_u16()
                )),
            }
        }
        SdkError::ConstructionFailure(_) => (
            false,
            format!(
                "{op} s3://{bucket}/{key} could not be built: {}",
                crate::error_chain(&err)
            ),
        ),
        _ => (
            true,
            format!("{op} s3://{bucket}/{key}: {}", crate::error_chain(&err)),
        ),
    };
    let cause = crate::Cause::new(message, err);
    if transient {
        BlobError::Unavailable(cause)
    } else {
        BlobError::Rejected(cause)
    }
}

async fn range_body(path: &Path, range: std::ops::Range<u64>) -> Result<ByteStream, BlobError> {
    ByteStream::read_from()
        .path(path)
        .offset(range.start)
        .length(aws_sdk_s3::primitives::Length::Exact(
            range.end.saturating_sub(range.start),
        ))
        .build()
        .await
        .map_err(|e| BlobError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        self.put_body(key, ByteStream::from(bytes), content_type)
            .await
    }

    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| BlobError::Io {
                path: path.display().to_string(),
                source: e,
            })?
            .len();
        if size > MULTIPART_THRESHOLD {
            return self.put_multipart(key, path, size, content_type).await;
        }
        self.put_file_range(key, path, 0..size, content_type).await
    }

    async fn put_file_range(
        &self,
        key: &str,
        path: &Path,
        range: std::ops::Range<u64>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        let body = range_body(path, range).await?;
        self.put_body(key, body, content_type).await
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| {
                    BlobError::Unavailable(
                        format!("reading s3://{}/{key}: {e}", self.bucket).into(),
                    )
                })?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.classify(e, "GetObject", key)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        // The first key that starts with `key` is `key` itself when it
        // exists (every other one is longer, so sorts after it); a listing
        // carries its size.
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.classify(e, "ListObjectsV2", key))?;
        Ok(page
            .contents
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.key.as_deref() == Some(key))
            .map(|o| o.size.unwrap_or(0).max(0) as u64))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.classify(e, "ListObjectsV2", prefix))?;
            keys.extend(
                page.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        Ok(keys)
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use aws_sdk_s3::{
        error::{ConnectorError, ErrorMetadata},
        operation::put_object::PutObjectError,
    };
    use aws_smithy_types::body::SdkBody;

    use super::*;

    /// S3's answer with `status` and, when given, the error `code` its body
    /// named.
    fn answer(status: u16, code: Option<&str>) -> SdkError<PutObjectError, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("the service said no");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            PutObjectError::generic(meta.build()),
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    fn put(err: SdkError<PutObjectError, HttpResponse>) -> BlobError {
        classify(err, "PutObject", "primary", "jobs/j1/log.txt")
    }

    fn unavailable(err: BlobError) -> String {
        assert!(
            err.is_transient(),
            "expected a transient error, got {err:?}"
        );
        match err {
            BlobError::Unavailable(cause) => {
                assert!(
                    cause.source().is_some(),
                    "the SDK error is kept as the cause"
                );
                cause.message().to_owned()
            }
            other => unreachable!("{other:?}"),
        }
    }

    fn rejected(err: BlobError) -> String {
        match err {
            BlobError::Rejected(cause) => {
                assert!(
                    cause.source().is_some(),
                    "the SDK error is kept as the cause"
                );
                cause.message().to_owned()
            }
            other => panic!("expected Rejected (retrying will not help), got {other:?}"),
        }
    }

    #[test]
    fn throttling_and_s3s_own_transient_codes_are_transient() {
        for (status, code) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (400, "RequestTimeout"),
        ] {
            let message = unavailable(put(answer(status, Some(code))));
            assert!(
                message.contains("PutObject s3://primary/jobs/j1/log.txt")
                    && message.contains(code),
                "{message}"
            );
        }
    }

    #[test]
    fn a_server_error_with_no_error_code_is_transient() {
        // A load balancer or proxy in front of S3 can answer 502/503 with
        // an empty body: the SDK then has no code to report.
        for status in [500, 502, 503, 504] {
            let message = unavailable(put(answer(status, None)));
            assert!(
                message.contains(&format!("HTTP {status}")) && message.contains("no error code"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_server_error_with_a_code_s3_does_not_document_is_transient() {
        let message = unavailable(put(answer(500, Some("SomethingNew"))));
        assert!(message.contains("SomethingNew"), "{message}");
    }

    #[test]
    fn a_dropped_connection_or_timeout_is_transient() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let message = unavailable(put(SdkError::dispatch_failure(ConnectorError::io(
            Box::new(reset),
        ))));
        assert!(message.contains("PutObject s3://primary/"), "{message}");
        unavailable(put(SdkError::timeout_error("the read timed out")));
    }

    #[test]
    fn a_client_error_is_rejected_with_s3s_message() {
        let message = rejected(put(answer(400, Some("InvalidArgument"))));
        assert!(
            message.contains("PutObject s3://primary/jobs/j1/log.txt failed (HTTP 400): InvalidArgument: the service said no"),
            "{message}"
        );
        let message = rejected(put(answer(403, None)));
        assert!(message.contains("HTTP 403"), "{message}");
    }

    #[test]
    fn a_missing_bucket_says_how_to_create_it() {
        let message = rejected(put(answer(404, Some("NoSuchBucket"))));
        assert!(
            message.contains("S3 bucket primary does not exist")
                && message.contains("scripts/setup.sh")
                && message.contains("PRIMARY_BUCKET"),
            "{message}"
        );
    }

    #[test]
    fn a_denied_request_says_to_grant_the_task_role_access() {
        for code in [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ] {
            let message = rejected(put(answer(403, Some(code))));
            assert!(
                message.contains("was denied") && message.contains("give the task role access"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_request_that_cannot_be_built_is_rejected() {
        let message = rejected(put(SdkError::construction_failure("no key")));
        assert!(message.contains("could not be built"), "{message}");
    }
}
