//! Integration tests of thywill-resources: the bootstrap pipeline (minification, bundles in
//! weight order, URL rewriting, pages and client templates, errors with file, line and column)
//! and the preparing store.

mod pipeline;
mod store;
