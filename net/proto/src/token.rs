//! Text form of credentials.
//!
//! A user token is `cu1_` followed by 96 lowercase hex digits: the user id
//! (16), the token id (16) and the 32-byte secret (64). The admin token is
//! `ca1_` followed by the 64-hex-digit secret. The ids in a user token let the
//! server route the check to the user's home shard without any global index;
//! only `sha256(secret)` is ever stored.
//!
//! An invite code is `ci1_` followed by 96 lowercase hex digits: the
//! workspace id (16), the invite id (16) and its 32-byte secret (64); the
//! workspace id routes the redemption to the workspace's shard.

use courier_core::api::{Credential, UserId, WorkspaceId};

const USER_PREFIX: &str = "cu1_";
const INVITE_PREFIX: &str = "ci1_";
const ADMIN_PREFIX: &str = "ca1_";

/// Why a token's text is not a credential. Deliberately vague towards peers:
/// the server answers every case with `Unauthenticated`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not of the form `cu1_…` / `ca1_…` with the right number of hex digits.
    #[error("malformed token (expected cu1_<96 hex> or ca1_<64 hex>)")]
    Malformed,
}

/// Renders a user token.
pub fn format_user(user: UserId, token: u64, secret: &[u8; 32]) -> String {
    let mut s = String::with_capacity(USER_PREFIX.len() + 96);
    s.push_str(USER_PREFIX);
    s.push_str(&format!("{:016x}{:016x}", user.0, token));
    push_hex(&mut s, secret);
    s
}

/// Renders the admin token.
pub fn format_admin(secret: &[u8; 32]) -> String {
    let mut s = String::with_capacity(ADMIN_PREFIX.len() + 64);
    s.push_str(ADMIN_PREFIX);
    push_hex(&mut s, secret);
    s
}

/// Parses either token form.
pub fn parse(text: &str) -> Result<Credential, TokenError> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix(USER_PREFIX) {
        if rest.len() != 96 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let user = u64::from_str_radix(&rest[..16], 16).map_err(|_| TokenError::Malformed)?;
        let token = u64::from_str_radix(&rest[16..32], 16).map_err(|_| TokenError::Malformed)?;
        let secret = parse_secret(&rest[32..])?;
        Ok(Credential::User {
            user: UserId(user),
            token,
            secret,
        })
    } else if let Some(rest) = text.strip_prefix(ADMIN_PREFIX) {
        if rest.len() != 64 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        Ok(Credential::Admin(parse_secret(rest)?))
    } else {
        Err(TokenError::Malformed)
    }
}

/// Renders an invite code.
pub fn format_invite(workspace: WorkspaceId, invite: u64, secret: &[u8; 32]) -> String {
    let mut s = String::with_capacity(INVITE_PREFIX.len() + 96);
    s.push_str(INVITE_PREFIX);
    s.push_str(&format!("{:016x}{:016x}", workspace.0, invite));
    push_hex(&mut s, secret);
    s
}

/// Parses an invite code into (workspace, invite id, secret).
pub fn parse_invite(text: &str) -> Result<(WorkspaceId, u64, [u8; 32]), TokenError> {
    let rest = text
        .trim()
        .strip_prefix(INVITE_PREFIX)
        .ok_or(TokenError::Malformed)?;
    if rest.len() != 96 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    let workspace = u64::from_str_radix(&rest[..16], 16).map_err(|_| TokenError::Malformed)?;
    let invite = u64::from_str_radix(&rest[16..32], 16).map_err(|_| TokenError::Malformed)?;
    Ok((WorkspaceId(workspace), invite, parse_secret(&rest[32..])?))
}

fn parse_secret(hex: &str) -> Result<[u8; 32], TokenError> {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or(TokenError::Malformed)?;
        // from_str_radix accepts a leading '+': reject anything but hex digits.
        if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        *byte = u8::from_str_radix(pair, 16).map_err(|_| TokenError::Malformed)?;
    }
    Ok(out)
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_token_round_trips() {
        let secret = [0xab; 32];
        let text = format_user(UserId(0x1234), 7, &secret);
        assert_eq!(text.len(), 100);
        assert_eq!(
            parse(&text),
            Ok(Credential::User {
                user: UserId(0x1234),
                token: 7,
                secret
            })
        );
    }

    #[test]
    fn invite_code_round_trips() {
        let secret = [0x5c; 32];
        let text = format_invite(WorkspaceId(0xfeed), 3, &secret);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("ci1_"));
        assert_eq!(parse_invite(&text), Ok((WorkspaceId(0xfeed), 3, secret)));
        for bad in [
            "",
            "ci1_",
            &text[..99],
            &format!("{text}0"),
            &text.replace("ci1_", "cu1_"),
            &text.replace("ci1_0", "ci1_+"),
        ] {
            assert_eq!(parse_invite(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        // An invite code is no credential.
        assert_eq!(parse(&text), Err(TokenError::Malformed));
    }

    #[test]
    fn admin_token_round_trips() {
        let secret = [3; 32];
        assert_eq!(parse(&format_admin(&secret)), Ok(Credential::Admin(secret)));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let good = format_user(UserId(1), 1, &[1; 32]);
        for bad in [
            "",
            "cu1_",
            "xx1_00",
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("cu1_0", "cu1_+"),
            &format!("ca1_{}", "g".repeat(64)),
            &format!("ca1_{}", "é".repeat(32)),
        ] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }
}
