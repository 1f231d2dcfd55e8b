//! Validation of client text (names, bodies) and size estimates used by
//! byte budgets.
//!
//! Everything here is a pure function; a failed check is a
//! [`Reject`] naming the field and the limit.

use crate::constants::{
    BODY_BYTES_MAX, INFO_OVERHEAD_BYTES, MENTIONS_PER_MESSAGE_MAX, MESSAGE_OVERHEAD_BYTES,
    NAME_BYTES_MAX, PREVIEW_BYTES_MAX,
};
use crate::types::{ConversationInfo, Message, Reject};

/// What a name names: handles (users, channels) may not contain spaces;
/// display names (workspaces, devices) may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A user or channel handle: `[a-z0-9._-]`, like Slack's.
    Handle,
    /// A display name: any printable text.
    Display,
}

/// Checks a name: 1..=NAME_BYTES_MAX bytes, no control characters, and
/// handles only from `[a-z0-9._-]`.
pub fn check_name(field: &str, name: &str, kind: NameKind) -> Result<(), Reject> {
    if name.is_empty() {
        return Err(Reject::Invalid(format!("{field}: empty")));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(Reject::TooLarge(format!(
            "{field}: more than NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes"
        )));
    }
    let ok = match kind {
        NameKind::Handle => name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)),
        NameKind::Display => !name.chars().any(char::is_control) && name.trim() == name,
    };
    if !ok {
        return Err(Reject::Invalid(format!("{field}: invalid characters")));
    }
    Ok(())
}

/// Checks a message body and its mention count.
pub fn check_body(body: &str, mentions: usize) -> Result<(), Reject> {
    if body.is_empty() {
        return Err(Reject::Invalid("body: empty".to_string()));
    }
    if body.len() > BODY_BYTES_MAX {
        return Err(Reject::TooLarge(format!(
            "body: more than BODY_BYTES_MAX ({BODY_BYTES_MAX}) bytes"
        )));
    }
    if mentions > MENTIONS_PER_MESSAGE_MAX {
        return Err(Reject::TooLarge(format!(
            "mentions: more than MENTIONS_PER_MESSAGE_MAX ({MENTIONS_PER_MESSAGE_MAX})"
        )));
    }
    Ok(())
}

/// Checks the value of a channel setting (issue 16, part 4): a topic or
/// purpose of at most TOPIC_BYTES_MAX bytes without control characters
/// but newlines (empty clears it), a new name as a channel name, nothing
/// for the others.
pub fn check_setting(kind: crate::types::ChangeKind, text: &str) -> Result<(), Reject> {
    use crate::constants::TOPIC_BYTES_MAX;
    use crate::types::ChangeKind;
    match kind {
        ChangeKind::Topic | ChangeKind::Purpose => {
            if text.len() > TOPIC_BYTES_MAX {
                return Err(Reject::TooLarge(format!(
                    "text: more than TOPIC_BYTES_MAX ({TOPIC_BYTES_MAX}) bytes"
                )));
            }
            if text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(Reject::Invalid("text: control characters".into()));
            }
            Ok(())
        }
        ChangeKind::Rename => check_name("name", text, NameKind::Handle),
        _ if !kind.is_setting() => Err(Reject::Invalid(
            "kind: not a channel setting (topic, purpose, rename, archive, unarchive, posting)"
                .into(),
        )),
        _ if text.is_empty() => Ok(()),
        _ => Err(Reject::Invalid(
            "text: must be empty for this setting".into(),
        )),
    }
}

/// Checks the text of a change (issue 17): an edit's new body (as a
/// message's), a reaction's emoji (1..=REACTION_BYTES_MAX bytes, no
/// whitespace or control characters), nothing for a delete, a pin or an
/// unpin.
pub fn check_change(kind: crate::types::ChangeKind, text: &str) -> Result<(), Reject> {
    use crate::constants::REACTION_BYTES_MAX;
    use crate::types::ChangeKind;
    match kind {
        ChangeKind::Edit => check_body(text, 0),
        ChangeKind::Delete if text.is_empty() => Ok(()),
        ChangeKind::Delete => Err(Reject::Invalid("text: must be empty for a delete".into())),
        ChangeKind::Pin | ChangeKind::Unpin if text.is_empty() => Ok(()),
        ChangeKind::Pin | ChangeKind::Unpin => {
            Err(Reject::Invalid("text: must be empty for a pin".into()))
        }
        ChangeKind::React | ChangeKind::Unreact => {
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Reject::Invalid(
                    "emoji: empty or with whitespace or control characters".into(),
                ));
            }
            if text.len() > REACTION_BYTES_MAX {
                return Err(Reject::TooLarge(format!(
                    "emoji: more than REACTION_BYTES_MAX ({REACTION_BYTES_MAX}) bytes"
                )));
            }
            Ok(())
        }
        _ => Err(Reject::Invalid(
            "kind: a channel setting (SetChannel), not a change of a message".into(),
        )),
    }
}

/// The start of `body`, at most PREVIEW_BYTES_MAX bytes, cut at a char
/// boundary.
pub fn preview(body: &str) -> String {
    let mut end = body.len().min(PREVIEW_BYTES_MAX);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

/// Cuts `text` to at most `max` bytes at a char boundary (in place).
pub fn cut(text: &mut String, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// Size estimate of a message in a reply (what byte budgets count).
pub fn message_bytes(message: &Message) -> usize {
    MESSAGE_OVERHEAD_BYTES
        + message.body.len()
        + 8 * message.mentions.len()
        + message
            .live
            .reactions
            .iter()
            .map(|r| r.emoji.len() + 8 + 8 * r.users.len())
            .sum::<usize>()
}

/// Size estimate of a conversation info in a reply.
pub fn info_bytes(info: &ConversationInfo) -> usize {
    INFO_OVERHEAD_BYTES
        + info.name.len()
        + 8 * info.members.len()
        + info.preview.as_ref().map_or(0, String::len)
        + info.settings.topic.len()
        + info.settings.purpose.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, kind: NameKind, expected: Result<(), &str>) {
        let got = check_name("name", name, kind).map_err(|r| match r {
            Reject::Invalid(_) => "invalid",
            Reject::TooLarge(_) => "too large",
            _ => "other",
        });
        assert_eq!(got, expected, "{name:?}");
    }

    #[test]
    fn names() {
        let long = "a".repeat(NAME_BYTES_MAX + 1);
        let max = "a".repeat(NAME_BYTES_MAX);
        check("general", NameKind::Handle, Ok(()));
        check("dev-ops_2.0", NameKind::Handle, Ok(()));
        check(&max, NameKind::Handle, Ok(()));
        check("", NameKind::Handle, Err("invalid"));
        check(&long, NameKind::Handle, Err("too large"));
        check("General", NameKind::Handle, Err("invalid"));
        check("a b", NameKind::Handle, Err("invalid"));
        check("Acme Corp", NameKind::Display, Ok(()));
        check("Ünïcödé", NameKind::Display, Ok(()));
        check(" padded", NameKind::Display, Err("invalid"));
        check("tab\there", NameKind::Display, Err("invalid"));
    }

    #[test]
    fn preview_cuts_at_char_boundary() {
        assert_eq!(preview("hi"), "hi");
        let long = "é".repeat(PREVIEW_BYTES_MAX); // 2 bytes each
        let p = preview(&long);
        assert!(p.len() <= PREVIEW_BYTES_MAX);
        assert!(p.len() >= PREVIEW_BYTES_MAX - 1);
        let odd = format!("a{}", "é".repeat(PREVIEW_BYTES_MAX));
        let p = preview(&odd);
        assert!(p.len() <= PREVIEW_BYTES_MAX && odd.starts_with(&p));
    }

    #[test]
    fn bodies() {
        assert_eq!(check_body("x", 0), Ok(()));
        assert!(matches!(check_body("", 0), Err(Reject::Invalid(_))));
        assert_eq!(
            check_body(&"x".repeat(BODY_BYTES_MAX), MENTIONS_PER_MESSAGE_MAX),
            Ok(())
        );
        assert!(matches!(
            check_body(&"x".repeat(BODY_BYTES_MAX + 1), 0),
            Err(Reject::TooLarge(_))
        ));
        assert!(matches!(
            check_body("x", MENTIONS_PER_MESSAGE_MAX + 1),
            Err(Reject::TooLarge(_))
        ));
    }
}
