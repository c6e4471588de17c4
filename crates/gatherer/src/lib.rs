//! gatherer
