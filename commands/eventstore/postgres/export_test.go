package postgres

// ReadAllSQL exposes the log query to the plan test.
const ReadAllSQL = readAllSQL

// TenantLogSQL exposes the tenant log query to its plan test.
const TenantLogSQL = tenantLogSQL
