"""HTTP routes: translate requests into commands or upstream calls, and answers back."""
