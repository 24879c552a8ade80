//! Option bits ("grbits") of the JET calls, named after the JET bits with their values.

use bitflags::bitflags;

bitflags! {
    /// Options of [`Instance::term`](crate::Instance::term) (JetTerm2's grbit).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TermGrbit: u32 {
        /// `JET_bitTermComplete` (0x1): a clean term (the default, like grbit 0).
        const COMPLETE = 0x1;
        /// `JET_bitTermAbrupt` (0x2): skip cleanup that can be skipped; still refuses with
        /// `TooManyActiveUsers` while a transaction is open, as ESE's source does.
        const ABRUPT = 0x2;
        /// `JET_bitTermStopBackup` (0x4): abort a running backup.
        const STOP_BACKUP = 0x4;
        /// `JET_bitTermDirty` (0x8): leave the databases dirty for recovery; term then returns
        /// `DirtyShutdown` (-1116).
        const DIRTY = 0x8;
    }
}

bitflags! {
    /// Options of [`Session::end`](crate::Session::end) (JetEndSession's grbit).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct EndSessionGrbit: u32 {
        /// `JET_bitForceSessionClosed` (0x1): accepted and ignored, as in ESE.
        const FORCE_SESSION_CLOSED = 0x1;
    }
}

bitflags! {
    /// Options of [`Session::begin_transaction2`](crate::Session::begin_transaction2).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BeginTransactionGrbit: u32 {
        /// `JET_bitTransactionReadOnly` (0x1): a read-only transaction; honoured only at level
        /// 0; an update inside it fails with `TransReadOnly` (-1110).
        const READ_ONLY = 0x1;
    }
}

bitflags! {
    /// Options of [`Session::commit_transaction`](crate::Session::commit_transaction).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct CommitGrbit: u32 {
        /// `JET_bitCommitLazyFlush` (0x1): return before the commit record is durable; the
        /// transaction may be lost in a crash, never partially.
        const LAZY_FLUSH = 0x1;
        /// `JET_bitWaitLastLevel0Commit` (0x2): used alone, outside a transaction: wait until
        /// this session's last lazy commit is durable.
        const WAIT_LAST_LEVEL0_COMMIT = 0x2;
        /// `JET_bitWaitAllLevel0Commit` (0x8): used alone: wait until every commit so far is
        /// durable.
        const WAIT_ALL_LEVEL0_COMMIT = 0x8;
        /// `JET_bitForceNewLog` (0x10): used alone: start a new log generation and wait.
        const FORCE_NEW_LOG = 0x10;
        /// `JET_bitCommitRedoCallback` (0x20): accepted for compatibility; no effect.
        const REDO_CALLBACK = 0x20;
    }
}

bitflags! {
    /// Options of [`Session::rollback`](crate::Session::rollback).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RollbackGrbit: u32 {
        /// `JET_bitRollbackAll` (0x1): roll back every level, not just the innermost.
        const ALL = 0x1;
        /// `JET_bitRollbackRedoCallback` (0x20): accepted for compatibility; no effect.
        const REDO_CALLBACK = 0x20;
    }
}

bitflags! {
    /// Options of [`Session::create_database`](crate::Session::create_database).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct CreateDatabaseGrbit: u32 {
        /// `JET_bitDbOverwriteExisting` (0x200): replace an existing file (which must not be
        /// attached).
        const OVERWRITE_EXISTING = 0x200;
    }
}

bitflags! {
    /// Options of [`Session::attach_database`](crate::Session::attach_database).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct AttachDatabaseGrbit: u32 {}
}

bitflags! {
    /// Options of [`Instance::backup`](crate::Instance::backup) (JetBackupInstance) and
    /// [`Instance::begin_external_backup`](crate::Instance::begin_external_backup)
    /// (JetBeginExternalBackupInstance).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BackupGrbit: u32 {
        /// `JET_bitBackupIncremental` (0x1): copy only the log generations written since the
        /// last full or incremental backup, no database pages. Needs a full backup first
        /// (`MissingFullBackup`, -560) and is refused with circular logging (`InvalidBackup`,
        /// -526).
        const INCREMENTAL = 0x1;
        /// `JET_bitBackupAtomic` (0x4): accepted; every backup is atomic here (the backup
        /// descriptor is written last, so a backup that did not finish is never valid).
        const ATOMIC = 0x4;
        /// `JET_bitBackupSnapshot` (0x10): a VSS-style snapshot backup; not supported
        /// (`FeatureNotAvailable`, -1001).
        const SNAPSHOT = 0x10;
        /// Not a JET bit (ESE's simple backup truncates unconditionally): after the backup,
        /// delete the log generations it made unnecessary, those older than the backup's last
        /// generation and the current checkpoint (ESE's `JetTruncateLogInstance`).
        const TRUNCATE_LOGS = 0x1_0000;
    }
}

bitflags! {
    /// Options of [`Instance::end_external_backup`](crate::Instance::end_external_backup)
    /// (JetEndExternalBackupInstance2).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct EndExternalBackupGrbit: u32 {
        /// `JET_bitBackupEndNormal` (0x1): the backup succeeded (the default, like grbit 0).
        const NORMAL = 0x1;
        /// `JET_bitBackupEndAbort` (0x2): the backup failed or was abandoned: no header update.
        const ABORT = 0x2;
        /// `JET_bitBackupTruncateDone` (0x100): accepted; the caller truncated the logs with
        /// [`Instance::truncate_backup_logs`](crate::Instance::truncate_backup_logs).
        const TRUNCATE_DONE = 0x100;
        /// `JET_bitBackupNoDbHeaderUpdate` (0x200): do not record the backup in the database
        /// headers.
        const NO_DB_HEADER_UPDATE = 0x200;
    }
}

bitflags! {
    /// Options of [`Table::set_column_with`](crate::Table::set_column_with) (JetSetColumn's
    /// grbit). `APPEND_LV`, `OVERWRITE_LV` and `SIZE_LV` apply to long columns (LongBinary,
    /// LongText) only; `APPEND_LV` goes with neither of the other two.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SetGrbit: u32 {
        /// `JET_bitSetAppendLV` (0x1): append the data to the value (a null value becomes the
        /// data).
        const APPEND_LV = 0x1;
        /// `JET_bitSetOverwriteLV` (0x4): write the data over the value from byte
        /// `SetInfo::ib_long_value`, extending it when the data runs past its end.
        const OVERWRITE_LV = 0x4;
        /// `JET_bitSetSizeLV` (0x8): the data is the new length of the value (a u32,
        /// little-endian): longer pads with zero bytes, shorter truncates. With
        /// `OVERWRITE_LV`: the data is written at the offset and the value ends after it.
        const SIZE_LV = 0x8;
        /// `JET_bitSetZeroLength` (0x20): empty data sets a zero-length value, not null.
        const ZERO_LENGTH = 0x20;
        /// `JET_bitSetSeparateLV` (0x40): accepted as a hint; where a long value goes is
        /// decided by its length (over 1024 bytes: separated) and the record's room.
        const SEPARATE_LV = 0x40;
        /// `JET_bitSetIntrinsicLV` (0x400): accepted as a hint, as `SEPARATE_LV`.
        const INTRINSIC_LV = 0x400;
    }
}

bitflags! {
    /// Options of [`Table::retrieve_column_with`](crate::Table::retrieve_column_with)
    /// (JetRetrieveColumn's grbit).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RetrieveGrbit: u32 {
        /// `JET_bitRetrieveCopy` (0x1): read the prepared update (the copy buffer); without
        /// it the record as stored is read.
        const COPY = 0x1;
        /// `JET_bitRetrieveIgnoreDefault` (0x20): a column without a value is null, not its
        /// default.
        const IGNORE_DEFAULT = 0x20;
    }
}
