//! Every request the suite sends to the emulator, checked as real AWS would
//! check it. The emulator accepts requests AWS refuses (a tag value with a
//! quote, a number DynamoDB cannot store, a multipart upload whose parts
//! declare another checksum than its start); the shared emulator's proxy
//! runs each DynamoDB and ECS request through the operation's input shape
//! in AWS's own service model ([`model`]) and the documented rules on top
//! ([`rules`]), and each S3 multipart upload through [`S3Uploads`]. A
//! request that breaks one is answered as AWS answers it (HTTP 400 with a
//! validation error naming the rule) and is printed, so the test that sent
//! it fails where the code under test would fail in production.

pub mod model;
pub mod rules;

use std::collections::HashMap;

use serde_json::Value;

/// The problems with one DynamoDB or ECS request (`target` as the proxy
/// names it: `DynamoDB:UpdateItem`, `ECS:RunTask`); empty when AWS would
/// accept it. Other services are not checked.
pub fn check_json(target: &str, body: &[u8]) -> Vec<String> {
    let Some((service, operation)) = target.split_once(':') else {
        return Vec::new();
    };
    let model = match service {
        "DynamoDB" => &model::models().dynamodb,
        "ECS" => &model::models().ecs,
        _ => return Vec::new(),
    };
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return vec![format!("{target}: the body is not JSON ({e})")],
    };
    let mut problems = model.check(operation, &body);
    match service {
        "DynamoDB" => rules::dynamodb(operation, &body, &mut problems),
        _ => rules::ecs(operation, &body, &mut problems),
    }
    problems
}

/// The error body and content type AWS answers a refused request with.
pub fn refusal(target: &str, problems: &[String]) -> (&'static str, String) {
    let message = format!(
        "plus-testkit: a request real AWS would refuse ({target}): {}",
        problems.join("; ")
    );
    if target.starts_with("S3:") {
        let escaped = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code><Message>{escaped}</Message></Error>"),
        )
    } else if target.starts_with("ECS:") {
        (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": "InvalidParameterException", "message": message})
                .to_string(),
        )
    } else {
        (
            "application/x-amz-json-1.0",
            serde_json::json!({"__type": "com.amazon.coral.validate#ValidationException", "message": message}).to_string(),
        )
    }
}

/// S3's rules for multipart uploads: each part carries the checksum
/// algorithm its upload declared at CreateMultipartUpload (or none), and
/// every part but the last has at least 5 MiB.
#[derive(Debug, Default)]
pub struct S3Uploads {
    /// Upload id -> the declared algorithm (lower case, "" for none).
    declared: HashMap<String, String>,
    /// Upload id -> part number -> size in bytes.
    parts: HashMap<String, HashMap<u32, u64>>,
    /// `bucket/key` of a CreateMultipartUpload in flight -> its algorithm.
    creating: HashMap<String, String>,
}

/// S3's smallest part but the last.
const MIN_PART_BYTES: u64 = 5 << 20;
const CHECKSUMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

impl S3Uploads {
    /// Checks one S3 request; the problems, empty when AWS would take it.
    pub fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<String> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then(|| v.to_owned())
            })
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut problems = Vec::new();
        if path.len() > 1 + 63 + 1 + 1024 {
            problems.push(format!("the key of {path} is over 1,024 bytes"));
        }
        match (
            method,
            param("uploads"),
            param("uploadId"),
            param("partNumber"),
        ) {
            ("POST", Some(_), _, _) => {
                let algorithm = header("x-amz-checksum-algorithm")
                    .unwrap_or("")
                    .to_ascii_lowercase();
                self.creating.insert(path.to_owned(), algorithm);
            }
            ("PUT", _, Some(upload), Some(part)) => {
                let sent: Vec<&str> = CHECKSUMS
                    .iter()
                    .copied()
                    .filter(|a| {
                        header(&format!("x-amz-checksum-{a}")).is_some()
                            || header("x-amz-sdk-checksum-algorithm")
                                .is_some_and(|h| h.eq_ignore_ascii_case(a))
                            || header("x-amz-trailer").is_some_and(|t| {
                                t.eq_ignore_ascii_case(&format!("x-amz-checksum-{a}"))
                            })
                    })
                    .collect();
                let declared = self.declared.get(&upload).cloned().unwrap_or_default();
                if let Some(a) = sent.first() {
                    if declared != *a {
                        problems.push(format!(
                            "UploadPart {part} sends a {a} checksum, but its CreateMultipartUpload declared {}: declare the same algorithm (x-amz-checksum-algorithm) on create",
                            if declared.is_empty() { "none" } else { declared.as_str() }
                        ));
                    }
                }
                let size = header("x-amz-decoded-content-length")
                    .or(header("content-length"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(body.len() as u64);
                if let Ok(n) = part.parse::<u32>() {
                    if !(1..=10_000).contains(&n) {
                        problems.push(format!("part number {n} is outside 1-10,000"));
                    }
                    self.parts.entry(upload).or_default().insert(n, size);
                }
            }
            ("POST", None, Some(upload), None) => {
                let text = String::from_utf8_lossy(body);
                let numbers: Vec<u32> = text
                    .split("<PartNumber>")
                    .skip(1)
                    .filter_map(|s| s.split('<').next()?.trim().parse().ok())
                    .collect();
                if numbers.windows(2).any(|w| w[0] >= w[1]) {
                    problems.push(
                        "CompleteMultipartUpload lists its parts out of ascending order".into(),
                    );
                }
                let sizes = self.parts.remove(&upload).unwrap_or_default();
                for n in numbers.iter().take(numbers.len().saturating_sub(1)) {
                    match sizes.get(n) {
                        Some(&size) if size < MIN_PART_BYTES => problems.push(format!(
                            "part {n} has {size} bytes; every part but the last needs at least 5 MiB"
                        )),
                        _ => {}
                    }
                }
                self.declared.remove(&upload);
            }
            _ => {}
        }
        problems
    }

    /// Notes the upload id a CreateMultipartUpload answer carries.
    pub fn response(&mut self, method: &str, path_and_query: &str, body: &[u8]) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        if method != "POST"
            || !query
                .split('&')
                .any(|kv| kv == "uploads" || kv.starts_with("uploads="))
        {
            return;
        }
        let text = String::from_utf8_lossy(body);
        let upload = text
            .split("<UploadId>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .map(str::to_owned);
        if let (Some(upload), Some(algorithm)) = (upload, self.creating.remove(path)) {
            self.declared.insert(upload, algorithm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_refuse_what_aws_refuses() {
        let tag = br#"{"cluster": "c", "taskDefinition": "t", "tags": [{"key": "plus:username", "value": "d'arcy"}]}"#;
        let problems = check_json("ECS:RunTask", tag);
        assert!(
            problems.iter().any(|p| p.contains("tags[0].value")),
            "{problems:?}"
        );
        let union = br#"{"TableName": "t", "Item": {"a": {"S": "x", "N": "1"}}}"#;
        let problems = check_json("DynamoDB:PutItem", union);
        assert!(
            problems.iter().any(|p| p.contains("exactly one member")),
            "{problems:?}"
        );
        let fine =
            br#"{"TableName": "t", "Key": {"object_id": {"S": "j"}}, "ConsistentRead": true}"#;
        assert_eq!(check_json("DynamoDB:GetItem", fine), Vec::<String>::new());
        let tiny = br#"{"TableName": "t", "Item": {"p": {"N": "1e-300"}}}"#;
        assert!(!check_json("DynamoDB:PutItem", tiny).is_empty());
    }

    #[test]
    fn multipart_parts_match_their_upload() {
        let mut s3 = S3Uploads::default();
        let none: Vec<(String, String)> = Vec::new();
        assert!(s3.request("POST", "/b/k?uploads", &none, b"").is_empty());
        s3.response("POST", "/b/k?uploads", b"<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>");
        let crc = vec![
            ("x-amz-checksum-crc32".to_owned(), "AAAAAA==".to_owned()),
            ("content-length".to_owned(), "10".to_owned()),
        ];
        let problems = s3.request("PUT", "/b/k?partNumber=1&uploadId=u1", &crc, b"");
        assert!(
            problems.iter().any(|p| p.contains("declared none")),
            "{problems:?}"
        );
        s3.request("PUT", "/b/k?partNumber=2&uploadId=u1", &crc, b"");
        let complete = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>";
        let problems = s3.request("POST", "/b/k?uploadId=u1", &none, complete);
        assert!(
            problems.iter().any(|p| p.contains("at least 5 MiB")),
            "{problems:?}"
        );
    }
}
