"""Brand teams: members who read and answer a brand's conversations as the brand."""
