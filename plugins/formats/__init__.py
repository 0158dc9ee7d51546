"""Built-in dataset formats: image folders, insightface RecordIO and ``.bin`` packs, Vec2Face/HSFace LMDB,
and pair-list test sets. Each module holds one format's reader, writer and format object."""
