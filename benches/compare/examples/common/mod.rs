//! What the single-engine examples share: the harness's table (a 24-byte Binary key column
//! under a unique primary index, a 150-byte Binary value column).

use ese::{ColumnDef, ColumnType, DbId, IndexCreate, IndexGrbit, Session, TableCreate};

/// Creates table `kv` in `db`.
///
/// # Errors
/// The engine's error.
pub fn create_kv_table(session: &Session, db: DbId) -> ese::Result<()> {
    session.create_table(
        db,
        &TableCreate {
            name: "kv".into(),
            columns: vec![
                ColumnDef::new("k", ColumnType::Binary).max_size(24),
                ColumnDef::new("v", ColumnType::Binary).max_size(150),
            ],
            indexes: vec![IndexCreate {
                name: "primary".into(),
                key: "+k\0\0".into(),
                grbit: IndexGrbit::PRIMARY | IndexGrbit::UNIQUE | IndexGrbit::DISALLOW_NULL,
                key_most: 64,
            }],
        },
    )
}
