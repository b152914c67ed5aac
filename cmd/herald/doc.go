// Command herald is Herald's one binary: the service (serve), the same with
// everything embedded for a laptop (dev), schema migrations (migrate),
// projection maintenance (projections), and dev-mode clients (token, watch).
package main
