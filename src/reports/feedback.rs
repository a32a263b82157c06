//! One DMARC aggregate report: the `<feedback>` document of RFC 7489
//! Appendix C, and of DMARCbis (RFC 9990: a namespace, `np`, `testing`,
//! `discovery_method`, `generator`, extensions), as receivers write it.
//! Elements not read here are ignored, as a report reader must (extensions,
//! `extra_contact_info`, `human_result`); what the verdict needs is required.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct Feedback {
    pub report_metadata: Metadata,
    pub policy_published: Published,
    #[serde(rename = "record", default)]
    pub records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub org_name: String,
    pub report_id: String,
    pub date_range: DateRange,
}

/// Unix seconds, UTC.
#[derive(Debug, Deserialize)]
pub struct DateRange {
    pub begin: i64,
    pub end: i64,
}

/// The DMARC record the receiver found (`p`, `sp`… as published; empty when a
/// receiver writes an empty element).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Published {
    #[serde(skip_serializing)]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adkim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct: Option<String>,
    /// DMARCbis: the policy for non-existent subdomains, and `t=y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub np: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testing: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Record {
    pub row: Row,
    pub identifiers: Identifiers,
    #[serde(default)]
    pub auth_results: AuthResults,
}

#[derive(Debug, Deserialize)]
pub struct Row {
    pub source_ip: String,
    pub count: u64,
    pub policy_evaluated: Evaluated,
}

/// What the receiver concluded: the aligned DKIM and SPF results DMARC is
/// made of, and what it did with the mail.
#[derive(Debug, Deserialize)]
pub struct Evaluated {
    #[serde(default)]
    pub disposition: Option<String>,
    #[serde(default)]
    pub dkim: Option<String>,
    #[serde(default)]
    pub spf: Option<String>,
    #[serde(default)]
    pub reason: Vec<Reason>,
}

#[derive(Debug, Deserialize)]
pub struct Reason {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Identifiers {
    pub header_from: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuthResults {
    #[serde(default)]
    pub dkim: Vec<DkimResult>,
    #[serde(default)]
    pub spf: Vec<SpfResult>,
}

/// A DKIM signature the receiver checked, aligned or not.
#[derive(Debug, Deserialize)]
pub struct DkimResult {
    pub domain: String,
    #[serde(default)]
    pub selector: Option<String>,
    pub result: String,
}

/// The SPF check of the envelope (`mfrom`) or HELO domain, aligned or not.
#[derive(Debug, Deserialize)]
pub struct SpfResult {
    pub domain: String,
    pub result: String,
}

/// A `pass` of any case (some receivers write `Pass`).
pub fn passes(result: Option<&str>) -> bool {
    result.is_some_and(|r| r.trim().eq_ignore_ascii_case("pass"))
}

impl Published {
    /// `p=none sp=none adkim=r …`: the tags the receiver reported.
    pub fn tags(&self) -> String {
        [
            ("p", &self.p),
            ("sp", &self.sp),
            ("np", &self.np),
            ("adkim", &self.adkim),
            ("aspf", &self.aspf),
            ("pct", &self.pct),
            ("t", &self.testing),
        ]
        .iter()
        .filter_map(|(tag, v)| {
            let v = v.as_deref()?.trim();
            (!v.is_empty()).then(|| format!("{tag}={v}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
    }
}

impl Feedback {
    /// Parses one `<feedback>` document (UTF-8, a byte-order mark allowed).
    /// The error says what is missing or wrong, never quoting the content.
    pub fn parse(xml: &[u8]) -> Result<Feedback, String> {
        let xml = xml.strip_prefix(b"\xef\xbb\xbf").unwrap_or(xml);
        let text = std::str::from_utf8(xml)
            .map_err(|e| format!("not UTF-8 text (byte {})", e.valid_up_to()))?;
        let head = text.trim_start();
        if !head.starts_with('<') {
            return Err("not XML".into());
        }
        if !root_is_feedback(head) {
            return Err("XML, but its root element is not <feedback>".into());
        }
        let feedback: Feedback = quick_xml::de::from_str(text).map_err(|e| match e {
            quick_xml::DeError::Custom(m) => m,
            other => format!("malformed XML: {}", describe(&other)),
        })?;
        for (i, r) in feedback.records.iter().enumerate() {
            r.row
                .source_ip
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("record {}: <source_ip> is not an IP address", i + 1))?;
        }
        if feedback.policy_published.domain.trim().is_empty() {
            return Err("<policy_published> has an empty <domain>".into());
        }
        Ok(feedback)
    }
}

/// The root element's local name is `feedback` (any namespace prefix),
/// after the XML declaration, comments and processing instructions.
fn root_is_feedback(text: &str) -> bool {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                return e.local_name().as_ref() == "feedback";
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// quick-xml's error without the document's text.
fn describe(e: &quick_xml::DeError) -> String {
    match e {
        quick_xml::DeError::InvalidXml(x) => x.to_string(),
        quick_xml::DeError::UnexpectedEof => "the document ends early".into(),
        _ => "not the report's structure".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7489 Appendix C's example, as a receiver fills it in.
    const RFC7489: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>acme.com</org_name>
    <email>noreply-dmarc-support@acme.com</email>
    <extra_contact_info>http://acme.com/dmarc/support</extra_contact_info>
    <report_id>9391651994964116463</report_id>
    <date_range><begin>1335571200</begin><end>1335657599</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>example.com</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>72.150.241.94</source_ip>
      <count>2</count>
      <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results>
      <dkim><domain>example.com</domain><result>fail</result><human_result></human_result></dkim>
      <spf><domain>example.com</domain><result>pass</result></spf>
    </auth_results>
  </record>
</feedback>
"#;

    #[test]
    fn the_rfc_example_reads() {
        let f = Feedback::parse(RFC7489.as_bytes()).unwrap();
        assert_eq!(f.report_metadata.org_name, "acme.com");
        assert_eq!(f.report_metadata.date_range.begin, 1335571200);
        assert_eq!(f.policy_published.p.as_deref(), Some("none"));
        assert_eq!(f.records.len(), 1);
        let r = &f.records[0];
        assert_eq!(r.row.count, 2);
        assert!(passes(r.row.policy_evaluated.spf.as_deref()));
        assert!(!passes(r.row.policy_evaluated.dkim.as_deref()));
        assert_eq!(r.auth_results.dkim[0].selector, None);
    }

    #[test]
    fn dmarcbis_reads_with_its_namespace_and_new_elements() {
        let bis = RFC7489
            .replace(
                "<feedback>",
                r#"<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0"><version>1.0</version>"#,
            )
            .replace(
                "<pct>100</pct>",
                "<np>reject</np><testing>n</testing><discovery_method>treewalk</discovery_method>",
            )
            .replace(
                "</record>",
                "</record><extension><x:y xmlns:x=\"urn:x\">z</x:y></extension>",
            );
        let f = Feedback::parse(bis.as_bytes()).unwrap();
        assert_eq!(f.policy_published.np.as_deref(), Some("reject"));
        assert_eq!(f.records.len(), 1);
        let bom = format!("\u{feff}{RFC7489}");
        assert!(Feedback::parse(bom.as_bytes()).is_ok());
    }

    #[test]
    fn what_is_wrong_is_said_without_the_content() {
        let no_meta = RFC7489.replace("report_metadata>", "report_meta>");
        let e = Feedback::parse(no_meta.as_bytes()).unwrap_err();
        assert!(e.contains("report_metadata"), "{e}");
        let bad_ip = RFC7489.replace("72.150.241.94", "secret-value");
        let e = Feedback::parse(bad_ip.as_bytes()).unwrap_err();
        assert_eq!(e, "record 1: <source_ip> is not an IP address");
        let cut = &RFC7489[..RFC7489.len() / 2];
        let e = Feedback::parse(cut.as_bytes()).unwrap_err();
        assert!(!e.contains("72.150"), "{e}");
        assert_eq!(Feedback::parse(b"hello").unwrap_err(), "not XML");
        let other = "<?xml version=\"1.0\"?><html><p>secret</p></html>";
        assert!(
            Feedback::parse(other.as_bytes())
                .unwrap_err()
                .contains("not <feedback>")
        );
    }
}
