//! Simple tokens (etcd's default `--auth-token simple`): opaque strings that
//! stand for a user on every member until they are unused for the TTL.
//!
//! A token is `<16 random letters>.<raft index>`: the member that checked the
//! password draws the random part, and apply appends the index of the
//! Authenticate entry and records the token, so every member knows every
//! token (a client may take its token to any member). Each successful use
//! pushes its deadline `--auth-token-ttl` further (etcd's
//! `simpleTokenKeeper.resetSimpleToken`). Expired tokens are dropped when
//! next looked up and by a sweep on each assignment.
//!
//! Tokens live in memory only: a restarted member (or one that joined from a
//! snapshot) does not know the tokens assigned before, as in etcd; a client
//! told "invalid auth token" authenticates again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;

/// Length of a token's random part (etcd's `defaultSimpleTokenLength`).
const RANDOM_LEN: usize = 16;

/// The random part of a new token.
pub fn random_part() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..RANDOM_LEN)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect()
}

struct Entry {
    user: String,
    deadline: Instant,
}

/// The tokens this member knows.
pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Entry>>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `token` for `user` (in apply).
    pub fn assign(&self, token: String, user: String) {
        let now = Instant::now();
        let mut g = self.lock();
        g.retain(|_, e| e.deadline > now);
        g.insert(
            token,
            Entry {
                user,
                deadline: now + self.ttl,
            },
        );
    }

    /// The user `token` stands for, if it is known and alive; extends it.
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut g = self.lock();
        let e = g.get_mut(token)?;
        if e.deadline <= now {
            g.remove(token);
            return None;
        }
        e.deadline = now + self.ttl;
        Some(e.user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, e| e.user != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_lookup_expire_invalidate() {
        let t = SimpleTokens::new(Duration::from_millis(200));
        t.assign("abc.5".into(), "alice".into());
        t.assign("def.6".into(), "bob".into());
        assert_eq!(t.user("abc.5").as_deref(), Some("alice"));
        assert_eq!(t.user("nope.1"), None);
        t.invalidate_user("alice");
        assert_eq!(t.user("abc.5"), None);
        assert_eq!(t.user("def.6").as_deref(), Some("bob"));
        // Use extends the deadline; no use lets it expire.
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(t.user("def.6").as_deref(), Some("bob"));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(t.user("def.6").as_deref(), Some("bob"));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.user("def.6"), None);
        t.assign("x.7".into(), "carol".into());
        t.clear();
        assert!(t.is_empty());
    }

    #[test]
    fn random_parts_differ_and_are_letters() {
        let a = random_part();
        let b = random_part();
        assert_eq!(a.len(), RANDOM_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }
}
