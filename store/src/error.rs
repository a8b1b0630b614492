//! The one error type of `keel-store`.
//!
//! Every fallible function in the crate returns [`Result`]. Errors become a
//! `tonic::Status` in exactly one place (`Error::to_status`, used by the service
//! adapters), with etcd's exact message and gRPC code where etcd has one.

/// keel-store's error enum.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read or compaction below the compaction point.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read at a revision above the current one.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A leader-only call reached a member that is not the leader.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The backend quota is used up, or the NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: writes are refused.
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    /// MoveLeader to a member that does not exist or cannot lead.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader did not finish in time.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    /// Errors of the Lock and Election services, which etcd sends with code
    /// Unknown and the concurrency package's message.
    #[error("{0}")]
    Concurrency(String),
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Strict reconfiguration check: the change would leave fewer started
    /// members than a quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Strict reconfiguration check: this member has not been connected to
    /// the peers the change needs for the last 5 seconds.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// A learner was asked for something only voters serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// This member was removed from the cluster: it stops.
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    /// An error another member answered a forwarded call with, passed on as is.
    #[error("{message}")]
    Forwarded { code: tonic::Code, message: String },
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    // --- Auth (etcd 3.4's rpctypes messages and codes) ---
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserExists,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleExists,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// An auth error that etcd 3.4's Maintenance service passes on untranslated
    /// (code Unknown, message of its auth package, e.g. "auth: permission
    /// denied").
    #[error("{0}")]
    AuthUntranslated(String),
    /// Any other invalid argument, with etcd's message.
    #[error("{0}")]
    InvalidArgument(String),
    /// The on-disk state is not what it must be (wrong cluster, corrupt record...).
    #[error("data dir: {0}")]
    Corrupt(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("transport: {0}")]
    Transport(String),
    /// A passing condition (e.g. a snapshot raced a compaction): try again.
    #[error("{0}")]
    Unavailable(String),
}

/// keel-store's result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC status etcd sends for this error (code and exact message).
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            Error::Compacted | Error::FutureRevision => Code::OutOfRange,
            Error::EmptyKey
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::KeyNotFound
            | Error::RequestTooLarge
            | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::LeaseNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::MemberNotFound => Code::NotFound,
            Error::MemberExists
            | Error::PeerUrlExists
            | Error::MemberNotLearner
            | Error::LearnerNotReady
            | Error::TooManyLearners
            | Error::NotEnoughStartedMembers => Code::FailedPrecondition,
            Error::MemberBadUrls => Code::InvalidArgument,
            Error::Unhealthy | Error::NotSupportedForLearner | Error::Removed => Code::Unavailable,
            Error::Forwarded { code, .. } => *code,
            Error::NotLeader | Error::BadLeaderTransferee => Code::FailedPrecondition,
            Error::NoSpace => Code::ResourceExhausted,
            Error::CorruptCluster => Code::DataLoss,
            Error::Concurrency(_) | Error::AuthUntranslated(_) => Code::Unknown,
            Error::RootUserNotExist
            | Error::RootRoleNotExist
            | Error::UserExists
            | Error::UserNotFound
            | Error::RoleExists
            | Error::RoleNotFound
            | Error::RoleNotGranted
            | Error::PermissionNotGranted
            | Error::AuthNotEnabled => Code::FailedPrecondition,
            Error::UserEmpty
            | Error::RoleEmpty
            | Error::AuthFailed
            | Error::InvalidAuthMgmt
            | Error::AuthOldRevision => Code::InvalidArgument,
            Error::PermissionDenied => Code::PermissionDenied,
            Error::InvalidAuthToken => Code::Unauthenticated,
            Error::NoLeader | Error::LeaderChanged | Error::Timeout | Error::Stopped => {
                Code::Unavailable
            }
            Error::Transport(_) | Error::Unavailable(_) => Code::Unavailable,
            _ => Code::Unknown,
        };
        tonic::Status::new(code, self.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        e.to_status()
    }
}
