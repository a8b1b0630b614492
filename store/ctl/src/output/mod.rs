//! etcdctl's output formats (`-w simple|json|fields|table|protobuf`): one
//! [`Printer`] with a method per response, each dispatching to the format's
//! file. Every format prints what etcdctl 3.4.23 prints for the same
//! response, byte for byte; a response a format cannot show is refused with
//! etcdctl's "<format> not supported as output format" (exit 4).
//!
//! Inspection commands beyond etcdctl (`keelctl inspect`) print through
//! [`table`]'s plain tables or JSON instead.

pub mod fields;
pub mod go;
pub mod json;
pub mod pb;
pub mod simple;
pub mod table;

use std::io::Write;
use std::time::Duration;

use keel_proto::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, MemberAddResponse,
    MemberListResponse, MoveLeaderResponse, PutResponse, RangeResponse, StatusResponse,
    TxnResponse, WatchResponse,
};

use crate::error::{CtlError, ExitCode};

/// Writes bytes to stdout at once (unbuffered between calls, so output and
/// a later error message keep their order).
pub fn out(b: impl AsRef<[u8]>) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b.as_ref());
    let _ = o.flush();
}

/// `println!` to stdout through [`out`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::out("\n") };
    ($($t:tt)*) => { $crate::output::out(format!("{}\n", format_args!($($t)*))) };
}

/// `-w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    /// etcdctl's names; anything else is "unsupported output format".
    pub fn parse(s: &str) -> Result<Format, CtlError> {
        Ok(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => {
                return Err(CtlError::new(
                    ExitCode::BadFeature,
                    "unsupported output format",
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// One `endpoint health` result.
#[derive(Debug, Clone)]
pub struct EpHealth {
    pub ep: String,
    pub health: bool,
    pub took: Duration,
    pub error: String,
}

/// One `endpoint status` result.
#[derive(Debug, Clone)]
pub struct EpStatus {
    pub ep: String,
    pub resp: StatusResponse,
}

/// One `endpoint hashkv` result.
#[derive(Debug, Clone)]
pub struct EpHashKv {
    pub ep: String,
    pub resp: HashKvResponse,
}

/// `snapshot status`: etcd's snapshot.Status.
#[derive(Debug, Clone, PartialEq)]
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Prints responses in one format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub hex: bool,
    /// `get --print-value-only` (simple only).
    pub value_only: bool,
}

type Res = Result<(), CtlError>;

fn unsupported(f: Format) -> Res {
    Err(CtlError::new(
        ExitCode::BadFeature,
        format!("{} not supported as output format", f.name()),
    ))
}

impl Printer {
    pub fn new(format: Format, hex: bool) -> Printer {
        Printer {
            format,
            hex,
            value_only: false,
        }
    }

    pub fn get(&self, r: &RangeResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::get(self, r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::range(r));
                Ok(())
            }
            Format::Fields => fields::get(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn put(&self, r: &PutResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::put(self, r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::put(r));
                Ok(())
            }
            Format::Fields => fields::put(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn del(&self, r: &DeleteRangeResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::del(self, r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::del(r));
                Ok(())
            }
            Format::Fields => fields::del(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn txn(&self, r: &TxnResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::txn(self, r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::txn(r));
                Ok(())
            }
            Format::Fields => fields::txn(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn watch(&self, r: &WatchResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::watch(self, r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::watch(r));
                Ok(())
            }
            Format::Fields => {
                fields::watch(r);
                Ok(())
            }
            Format::Protobuf => {
                pb::watch(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn grant(&self, r: &LeaseGrantResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::grant(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::grant(r));
                Ok(())
            }
            Format::Fields => fields::grant(r),
            Format::Protobuf => {
                pb::header_only(r.header.as_ref());
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn revoke(&self, id: i64, r: &LeaseRevokeResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::revoke(id);
                Ok(())
            }
            Format::Json => {
                json::print(&json::header_resp(r.header.as_ref()));
                Ok(())
            }
            Format::Fields => fields::header_only(r.header.as_ref()),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn keep_alive(&self, r: &LeaseKeepAliveResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::keep_alive(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::keep_alive(r));
                Ok(())
            }
            Format::Fields => fields::keep_alive(r),
            Format::Protobuf => {
                pb::header_only(r.header.as_ref());
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn time_to_live(&self, r: &LeaseTimeToLiveResponse, keys: bool) -> Res {
        match self.format {
            Format::Simple => {
                simple::time_to_live(r, keys);
                Ok(())
            }
            Format::Json => {
                json::print(&json::time_to_live(r));
                Ok(())
            }
            Format::Fields => fields::time_to_live(r),
            Format::Protobuf => {
                pb::header_only(r.header.as_ref());
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn leases(&self, r: &LeaseLeasesResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::leases(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::leases(r));
                Ok(())
            }
            Format::Fields => fields::leases(r),
            Format::Protobuf => {
                pb::header_only(r.header.as_ref());
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn member_list(&self, r: &MemberListResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::member_list(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::member_list(r));
                Ok(())
            }
            Format::Fields => fields::member_list(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => {
                table::member_list(r);
                Ok(())
            }
        }
    }

    pub fn member_add(&self, r: &MemberAddResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::member_add(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::member_add(r));
                Ok(())
            }
            Format::Fields => fields::member_add(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    /// `member remove|update|promote`: `verb` is "removed from", "updated
    /// in" or "promoted in".
    pub fn member_change(
        &self,
        id: u64,
        verb: &str,
        header: Option<&keel_proto::etcdserverpb::ResponseHeader>,
        members: &[keel_proto::etcdserverpb::Member],
        raw: &dyn Fn() -> Vec<u8>,
    ) -> Res {
        match self.format {
            Format::Simple => {
                simple::member_change(id, verb, header);
                Ok(())
            }
            Format::Json => {
                json::print(&json::members_resp(header, members));
                Ok(())
            }
            Format::Fields => fields::members_resp(header, members),
            Format::Protobuf => {
                pb::print_bytes(&raw());
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn endpoint_health(&self, hs: &[EpHealth]) -> Res {
        match self.format {
            Format::Simple => {
                simple::endpoint_health(hs);
                Ok(())
            }
            Format::Json => {
                json::print(&json::endpoint_health(hs));
                Ok(())
            }
            Format::Fields => {
                fields::endpoint_health(hs);
                Ok(())
            }
            Format::Table => {
                table::endpoint_health(hs);
                Ok(())
            }
            Format::Protobuf => unsupported(self.format),
        }
    }

    pub fn endpoint_status(&self, s: &[EpStatus]) -> Res {
        match self.format {
            Format::Simple => {
                simple::endpoint_status(s);
                Ok(())
            }
            Format::Json => {
                json::print(&json::endpoint_status(s));
                Ok(())
            }
            Format::Fields => fields::endpoint_status(s),
            Format::Table => {
                table::endpoint_status(s);
                Ok(())
            }
            Format::Protobuf => unsupported(self.format),
        }
    }

    pub fn endpoint_hashkv(&self, s: &[EpHashKv]) -> Res {
        match self.format {
            Format::Simple => {
                simple::endpoint_hashkv(s);
                Ok(())
            }
            Format::Json => {
                json::print(&json::endpoint_hashkv(s));
                Ok(())
            }
            Format::Fields => fields::endpoint_hashkv(s),
            Format::Table => {
                table::endpoint_hashkv(s);
                Ok(())
            }
            Format::Protobuf => unsupported(self.format),
        }
    }

    pub fn alarm(&self, r: &AlarmResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::alarm(r);
                Ok(())
            }
            Format::Json => {
                json::print(&json::alarm(r));
                Ok(())
            }
            Format::Fields => fields::alarm(r),
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Table => unsupported(self.format),
        }
    }

    pub fn db_status(&self, s: &DbStatus) -> Res {
        match self.format {
            Format::Simple => {
                simple::db_status(s);
                Ok(())
            }
            Format::Json => {
                json::print(&json::db_status(s));
                Ok(())
            }
            Format::Fields => {
                fields::db_status(s);
                Ok(())
            }
            Format::Table => {
                table::db_status(s);
                Ok(())
            }
            Format::Protobuf => unsupported(self.format),
        }
    }

    pub fn move_leader(&self, leader: u64, target: u64, r: &MoveLeaderResponse) -> Res {
        match self.format {
            Format::Simple => {
                simple::move_leader(leader, target);
                Ok(())
            }
            Format::Json => {
                json::print(&json::header_resp(r.header.as_ref()));
                Ok(())
            }
            Format::Protobuf => {
                pb::print(r);
                Ok(())
            }
            Format::Fields | Format::Table => unsupported(self.format),
        }
    }
}
