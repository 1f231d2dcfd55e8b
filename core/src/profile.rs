//! Profiles as pure functions: checking a [`ProfileUpdate`] against the
//! limits, applying it, what readers are shown (an expired status is
//! empty), directory sort keys and the size estimate byte budgets use.
//!
//! A failed check is a [`Reject`] naming the field and the limit, never a
//! panic; the connection shard runs it before any cross-shard hop, and the
//! home shard applies only updates that passed it.

use crate::constants::{
    AVATAR_URL_BYTES_MAX, DISPLAY_NAME_BYTES_MAX, PROFILE_OVERHEAD_BYTES, REAL_NAME_BYTES_MAX,
    STATUS_EMOJI_BYTES_MAX, STATUS_TEXT_BYTES_MAX, TIME_ZONE_BYTES_MAX, TITLE_BYTES_MAX,
};
use crate::record::ProfileRecord;
use crate::types::{Millis, Profile, ProfileUpdate, Reject, Status, UserProfile};

fn too_long(field: &str, limit: &str, max: usize) -> Reject {
    Reject::TooLarge(format!("{field}: more than {limit} ({max}) bytes"))
}

/// Free text (names, title, status text): at most `max` bytes, no control
/// characters, no leading or trailing whitespace. Empty is allowed (clears).
fn check_text(field: &str, value: &str, limit: &str, max: usize) -> Result<(), Reject> {
    if value.len() > max {
        return Err(too_long(field, limit, max));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(Reject::Invalid(format!(
            "{field}: control characters or leading/trailing spaces"
        )));
    }
    Ok(())
}

/// A time zone name: empty, or IANA-like `[A-Za-z0-9_+-/]` (`UTC`,
/// `Europe/Berlin`, `Etc/GMT+5`) without a leading `/`.
fn check_time_zone(value: &str) -> Result<(), Reject> {
    if value.len() > TIME_ZONE_BYTES_MAX {
        return Err(too_long(
            "time_zone",
            "TIME_ZONE_BYTES_MAX",
            TIME_ZONE_BYTES_MAX,
        ));
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-/".contains(&b))
        && !value.starts_with('/');
    if !ok {
        return Err(Reject::Invalid(
            "time_zone: an IANA zone name like Europe/Berlin".into(),
        ));
    }
    Ok(())
}

/// An avatar URL: empty, or `https://` followed by printable ASCII without
/// spaces.
fn check_avatar(value: &str) -> Result<(), Reject> {
    if value.len() > AVATAR_URL_BYTES_MAX {
        return Err(too_long(
            "avatar_url",
            "AVATAR_URL_BYTES_MAX",
            AVATAR_URL_BYTES_MAX,
        ));
    }
    if value.is_empty() {
        return Ok(());
    }
    let rest = value.strip_prefix("https://").unwrap_or("");
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Reject::Invalid(
            "avatar_url: an https:// URL of printable ASCII".into(),
        ));
    }
    Ok(())
}

fn check_status(status: &Status) -> Result<(), Reject> {
    if status.emoji.len() > STATUS_EMOJI_BYTES_MAX {
        return Err(too_long(
            "status_emoji",
            "STATUS_EMOJI_BYTES_MAX",
            STATUS_EMOJI_BYTES_MAX,
        ));
    }
    if status
        .emoji
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Reject::Invalid(
            "status_emoji: no spaces or control characters".into(),
        ));
    }
    check_text(
        "status_text",
        &status.text,
        "STATUS_TEXT_BYTES_MAX",
        STATUS_TEXT_BYTES_MAX,
    )
}

/// Checks every field an update sets; an update that sets nothing is
/// `Invalid` (it would only bump the version).
pub fn check_profile_update(update: &ProfileUpdate) -> Result<(), Reject> {
    if update.is_empty() {
        return Err(Reject::Invalid(
            "profile: the update changes nothing".into(),
        ));
    }
    let texts = [
        (
            "display_name",
            &update.display_name,
            "DISPLAY_NAME_BYTES_MAX",
            DISPLAY_NAME_BYTES_MAX,
        ),
        (
            "real_name",
            &update.real_name,
            "REAL_NAME_BYTES_MAX",
            REAL_NAME_BYTES_MAX,
        ),
        ("title", &update.title, "TITLE_BYTES_MAX", TITLE_BYTES_MAX),
    ];
    for (field, value, limit, max) in texts {
        if let Some(v) = value {
            check_text(field, v, limit, max)?;
        }
    }
    if let Some(tz) = &update.time_zone {
        check_time_zone(tz)?;
    }
    if let Some(url) = &update.avatar_url {
        check_avatar(url)?;
    }
    if let Some(status) = &update.status {
        check_status(status)?;
    }
    Ok(())
}

/// The profile after `update` (fields it leaves `None` keep their value).
pub fn apply_update(profile: &Profile, update: &ProfileUpdate) -> Profile {
    let pick = |new: &Option<String>, old: &String| new.clone().unwrap_or_else(|| old.clone());
    Profile {
        display_name: pick(&update.display_name, &profile.display_name),
        real_name: pick(&update.real_name, &profile.real_name),
        title: pick(&update.title, &profile.title),
        time_zone: pick(&update.time_zone, &profile.time_zone),
        avatar_url: pick(&update.avatar_url, &profile.avatar_url),
        status: update
            .status
            .clone()
            .unwrap_or_else(|| profile.status.clone()),
    }
}

/// The profile as a reader at `now` sees it: a status whose expiry passed
/// is empty.
pub fn shown(profile: &Profile, now: Millis) -> Profile {
    let mut p = profile.clone();
    if p.status.expires.is_some_and(|t| t <= now) {
        p.status = Status::default();
    }
    p
}

/// The directory sort key of a user: the lower-cased display name, or the
/// handle when there is none.
pub fn sort_key(handle: &str, display_name: &str) -> String {
    if display_name.is_empty() {
        handle.to_lowercase()
    } else {
        display_name.to_lowercase()
    }
}

/// A stored profile as the API type.
pub fn from_record(r: &ProfileRecord) -> Profile {
    Profile {
        display_name: r.display_name.clone(),
        real_name: r.real_name.clone(),
        title: r.title.clone(),
        time_zone: r.time_zone.clone(),
        avatar_url: r.avatar_url.clone(),
        status: Status {
            emoji: r.status_emoji.clone(),
            text: r.status_text.clone(),
            expires: r.status_expires.map(Millis),
        },
    }
}

/// A profile as stored.
pub fn to_record(p: &Profile) -> ProfileRecord {
    ProfileRecord {
        display_name: p.display_name.clone(),
        real_name: p.real_name.clone(),
        title: p.title.clone(),
        time_zone: p.time_zone.clone(),
        avatar_url: p.avatar_url.clone(),
        status_emoji: p.status.emoji.clone(),
        status_text: p.status.text.clone(),
        status_expires: p.status.expires.map(|m| m.0),
    }
}

/// Size estimate of a profile in a reply (what byte budgets count).
pub fn profile_bytes(p: &UserProfile) -> usize {
    let f = &p.profile;
    PROFILE_OVERHEAD_BYTES
        + p.handle.len()
        + f.display_name.len()
        + f.real_name.len()
        + f.title.len()
        + f.time_zone.len()
        + f.avatar_url.len()
        + f.status.emoji.len()
        + f.status.text.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::PROFILE_BYTES_MAX;
    use crate::types::UserId;

    fn update(f: impl FnOnce(&mut ProfileUpdate)) -> ProfileUpdate {
        let mut u = ProfileUpdate::default();
        f(&mut u);
        u
    }

    fn verdict(u: &ProfileUpdate) -> &'static str {
        match check_profile_update(u) {
            Ok(()) => "ok",
            Err(Reject::Invalid(_)) => "invalid",
            Err(Reject::TooLarge(_)) => "too large",
            Err(_) => "other",
        }
    }

    #[test]
    fn checks_every_field() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(verdict(&ProfileUpdate::default()), "invalid");
        assert_eq!(verdict(&update(|u| u.display_name = s("Ann Lee"))), "ok");
        assert_eq!(verdict(&update(|u| u.display_name = s(""))), "ok");
        assert_eq!(
            verdict(&update(|u| u.display_name = s(&"é".repeat(41)))),
            "too large"
        );
        assert_eq!(verdict(&update(|u| u.display_name = s(" Ann"))), "invalid");
        assert_eq!(verdict(&update(|u| u.real_name = s("A\nB"))), "invalid");
        assert_eq!(
            verdict(&update(|u| u.title = s(&"t".repeat(101)))),
            "too large"
        );
        assert_eq!(verdict(&update(|u| u.time_zone = s("Europe/Berlin"))), "ok");
        assert_eq!(verdict(&update(|u| u.time_zone = s("Etc/GMT+5"))), "ok");
        assert_eq!(
            verdict(&update(|u| u.time_zone = s("Mars Base"))),
            "invalid"
        );
        assert_eq!(verdict(&update(|u| u.time_zone = s("/etc"))), "invalid");
        assert_eq!(
            verdict(&update(|u| u.avatar_url = s("https://x.example/a.png"))),
            "ok"
        );
        assert_eq!(
            verdict(&update(|u| u.avatar_url = s("http://x.example/a.png"))),
            "invalid"
        );
        assert_eq!(
            verdict(&update(|u| u.avatar_url = s("https://a b"))),
            "invalid"
        );
        assert_eq!(
            verdict(&update(|u| u.avatar_url = s("https://"))),
            "invalid"
        );
        let long_url = format!("https://{}", "a".repeat(AVATAR_URL_BYTES_MAX));
        assert_eq!(
            verdict(&update(|u| u.avatar_url = s(&long_url))),
            "too large"
        );
        let status = |emoji: &str, text: &str| Status {
            emoji: emoji.into(),
            text: text.into(),
            expires: Some(Millis(5)),
        };
        assert_eq!(
            verdict(&update(|u| u.status = Some(status("☕", "lunch")))),
            "ok"
        );
        assert_eq!(
            verdict(&update(|u| u.status = Some(status(":a b:", "")))),
            "invalid"
        );
        assert_eq!(
            verdict(&update(|u| u.status = Some(status("", &"x".repeat(101))))),
            "too large"
        );
        assert_eq!(
            verdict(&update(|u| u.status = Some(Status::default()))),
            "ok"
        );
    }

    #[test]
    fn update_keeps_untouched_fields_and_expiry_hides_status() {
        let base = Profile {
            display_name: "Ann".into(),
            title: "CTO".into(),
            status: Status {
                emoji: "🌴".into(),
                text: "away".into(),
                expires: Some(Millis(100)),
            },
            ..Profile::default()
        };
        let next = apply_update(
            &base,
            &update(|u| {
                u.title = Some(String::new());
                u.real_name = Some("Ann Lee".into());
            }),
        );
        assert_eq!(next.display_name, "Ann");
        assert_eq!(next.title, "");
        assert_eq!(next.real_name, "Ann Lee");
        assert_eq!(next.status, base.status);
        assert_eq!(shown(&next, Millis(99)).status, base.status);
        assert!(shown(&next, Millis(100)).status.is_empty());
    }

    #[test]
    fn sort_keys_and_size_bound() {
        assert_eq!(sort_key("ann", ""), "ann");
        assert_eq!(sort_key("ann", "Zoë Ann"), "zoë ann");
        let big = UserProfile {
            user: UserId(1),
            handle: "h".repeat(crate::constants::NAME_BYTES_MAX),
            profile: Profile {
                display_name: "d".repeat(DISPLAY_NAME_BYTES_MAX),
                real_name: "r".repeat(REAL_NAME_BYTES_MAX),
                title: "t".repeat(TITLE_BYTES_MAX),
                time_zone: "z".repeat(TIME_ZONE_BYTES_MAX),
                avatar_url: "a".repeat(AVATAR_URL_BYTES_MAX),
                status: Status {
                    emoji: "e".repeat(STATUS_EMOJI_BYTES_MAX),
                    text: "s".repeat(STATUS_TEXT_BYTES_MAX),
                    expires: None,
                },
            },
            version: 1,
        };
        assert_eq!(profile_bytes(&big), PROFILE_BYTES_MAX);
    }
}
