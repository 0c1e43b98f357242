//! The query path under load: concurrent searches against the real server while a batch is indexed.
