//! Blobs in the primary S3 bucket.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::{
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

    fn classify<E, R>(&self, err: SdkError<E, R>, op: &str, key: &str) -> BlobError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let bucket = &self.bucket;
        let (transient, message) = match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                match e.code() {
                    None => {
                        let raw: String = format!("{:?}", service.raw()).chars().take(600).collect();
                        (false, format!("{op} s3://{bucket}/{key} failed with an answer S3 does not document: {raw}"))
                    }
                    Some("NoSuchBucket") => (false, format!(
                        "S3 bucket {bucket} does not exist: create it with scripts/setup.sh or fix PRIMARY_BUCKET"
                    )),
                    Some(code @ ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")) => (false, format!(
                        "{op} s3://{bucket}/{key} was denied ({code}): give the task role access to the bucket"
                    )),
                    Some(code @ ("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout")) => {
                        (true, format!("{op} s3://{bucket}/{key}: {code}: {}", e.message().unwrap_or("")))
                    }
                    Some(code) => (false, format!("{op} s3://{bucket}/{key} failed: {code}: {}", e.message().unwrap_or(""))),
                }
            }
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
