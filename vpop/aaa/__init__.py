"""The authentication and ISP routing centre: RADIUS policy behind FreeRADIUS (identity,
authentication, the ISP chosen by rules, the reply per NAS family, accounting, CoA)."""
