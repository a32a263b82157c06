//! The containers receivers send aggregate reports in: a bare `.xml`, a
//! `.xml.gz`, a `.zip` (Google's), or a whole message (`.eml`) with one of
//! those attached in whatever MIME encoding the sender chose (base64,
//! quoted-printable, an `application/octet-stream` part, the report inline).
//! Known by their content, not their names. Pure: bytes in, reports out,
//! with no more than `MAX_EXPANDED` bytes unpacked from any one file.

use std::io::Read;

use mail_parser::MimeHeaders;

use super::feedback::Feedback;

/// The most one file may expand to (gzip and zip bombs stop here).
pub const MAX_EXPANDED: u64 = 256 << 20;

/// Containers within containers (a zip attached to a message), at most.
const MAX_DEPTH: usize = 3;

/// The reports in one file, or why none could be read: the path through its
/// containers and what is wrong (`attachment report.zip: entry a.xml: …`).
pub fn reports(bytes: &[u8]) -> Result<Vec<Feedback>, String> {
    let mut budget = MAX_EXPANDED;
    let found = unpack(bytes, 0, &mut budget)?;
    match found.is_empty() {
        true => Err("no DMARC aggregate report in it".into()),
        false => Ok(found),
    }
}

fn unpack(bytes: &[u8], depth: usize, budget: &mut u64) -> Result<Vec<Feedback>, String> {
    if depth > MAX_DEPTH {
        return Err("containers nested too deep".into());
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let xml = expand(flate2::read::MultiGzDecoder::new(bytes), budget)
            .map_err(|e| format!("gzip: {e}"))?;
        return unpack(&xml, depth + 1, budget).map_err(|e| format!("gzip: {e}"));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return unzip(bytes, depth, budget);
    }
    let head = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if head.trim_ascii_start().starts_with(b"<") {
        return Feedback::parse(bytes).map(|f| vec![f]);
    }
    message(bytes, depth, budget)
}

fn unzip(bytes: &[u8], depth: usize, budget: &mut u64) -> Result<Vec<Feedback>, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("zip: {e}"))?;
    let mut found = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| format!("zip: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = printable(&String::from_utf8_lossy(entry.name_raw()));
        let content = expand(entry, budget).map_err(|e| format!("zip entry {name}: {e}"))?;
        found.extend(
            unpack(&content, depth + 1, budget).map_err(|e| format!("zip entry {name}: {e}"))?,
        );
    }
    Ok(found)
}

/// A message: every attachment, and an XML body, that holds a report. Parts
/// that are plainly something else (the text a receiver writes around the
/// report) are passed over; a part that looks like a report but is not one
/// is an error.
fn message(bytes: &[u8], depth: usize, budget: &mut u64) -> Result<Vec<Feedback>, String> {
    let Some(msg) = mail_parser::MessageParser::default().parse(bytes) else {
        return Err("neither XML, gzip, zip nor a mail message".into());
    };
    if msg.headers().is_empty() {
        return Err("neither XML, gzip, zip nor a mail message".into());
    }
    let mut found = Vec::new();
    for (i, part) in msg.parts.iter().enumerate() {
        if part.is_multipart() || part.is_message() {
            continue;
        }
        let name = part
            .attachment_name()
            .map(printable)
            .unwrap_or_else(|| format!("part {}", i + 1));
        let content_type = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into());
        let contents = part.contents();
        if !maybe_report(&content_type, &name, contents) {
            continue;
        }
        *budget = budget
            .checked_sub(contents.len() as u64)
            .ok_or_else(|| format!("{name}: larger than {} MiB", MAX_EXPANDED >> 20))?;
        found.extend(
            unpack(contents, depth + 1, budget).map_err(|e| format!("attachment {name}: {e}"))?,
        );
    }
    if found.is_empty() {
        return Err(format!(
            "a mail message ({}) with no DMARC report attached",
            msg.subject()
                .map(printable)
                .unwrap_or_else(|| "no subject".into())
        ));
    }
    Ok(found)
}

/// Whether a message part is (or may be) a report: compressed, XML, or an
/// octet stream named like one. The message's own text is not.
fn maybe_report(content_type: &str, name: &str, contents: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    let named = [".xml", ".gz", ".zip", ".xml.gz"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let typed = matches!(
        content_type,
        "application/zip"
            | "application/x-zip-compressed"
            | "application/x-zip"
            | "application/gzip"
            | "application/x-gzip"
            | "application/xml"
            | "text/xml"
    );
    let looks = contents.starts_with(&[0x1f, 0x8b])
        || contents.starts_with(b"PK\x03\x04")
        || contents
            .trim_ascii_start()
            .strip_prefix(b"\xef\xbb\xbf")
            .unwrap_or(contents.trim_ascii_start())
            .starts_with(b"<?xml");
    typed || named || looks
}

/// Reads all of `r`, taking what it expands to from `budget`.
fn expand(r: impl Read, budget: &mut u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.take(*budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > *budget {
        return Err(format!("expands beyond {} MiB", MAX_EXPANDED >> 20));
    }
    *budget -= out.len() as u64;
    Ok(out)
}

/// A name from the file, fit to print: control characters dropped, cut short.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const XML: &str = "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>r.example</org_name>\
        <report_id>1</report_id><date_range><begin>1</begin><end>2</end></date_range></report_metadata>\
        <policy_published><domain>example.com</domain><p>none</p></policy_published>\
        <record><row><source_ip>192.0.2.1</source_ip><count>3</count><policy_evaluated>\
        <disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>\
        <identifiers><header_from>example.com</header_from></identifiers></record></feedback>";

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn b64(data: &[u8]) -> String {
        use base64ct::Encoding;
        base64ct::Base64::encode_string(data)
    }

    #[test]
    fn xml_gzip_and_a_message_with_a_gzip_attached() {
        assert_eq!(reports(XML.as_bytes()).unwrap().len(), 1);
        assert_eq!(
            reports(&gz(XML.as_bytes())).unwrap()[0].records[0]
                .row
                .count,
            3
        );
        let eml = format!(
            "From: dmarc@r.example\r\nSubject: Report domain: example.com\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             This is a DMARC report.\r\n--b\r\nContent-Type: application/octet-stream; name=\"r.xml.gz\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            b64(&gz(XML.as_bytes()))
        );
        assert_eq!(reports(eml.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn bombs_and_strangers_are_refused_with_the_reason() {
        let zeros = gz(&vec![b' '; (MAX_EXPANDED + 10) as usize]);
        assert!(
            reports(&zeros)
                .unwrap_err()
                .contains("expands beyond 256 MiB")
        );
        let cut = gz(XML.as_bytes());
        let e = reports(&cut[..cut.len() - 12]).unwrap_err();
        assert!(e.starts_with("gzip: "), "{e}");
        let plain = "From: a@b.example\r\nSubject: hello\r\n\r\nJust text.\r\n";
        assert_eq!(
            reports(plain.as_bytes()).unwrap_err(),
            "a mail message (hello) with no DMARC report attached"
        );
        assert!(reports(b"\x00\x01binary").is_err());
    }
}
