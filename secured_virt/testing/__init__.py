"""Helpers for secured-virt's own test suites (real PAM stack through pam_wrapper, ...).

Never imported by the programs themselves.
"""
