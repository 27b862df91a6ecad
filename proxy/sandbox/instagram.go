package sandbox

// Instagram accounts linked to a page, as the Messenger Platform serves
// them: users write to the account (entry.id is its id, object is
// instagram), and apps reach those conversations through the page's
// /{page-id}/... edges with the page's token.

// objectOf is the webhook object of an account's entries.
func (p *Platform) objectOf(account string) string {
	if p.igAccounts[account] {
		return "instagram"
	}
	return "page"
}

// conversationAccount is the account whose conversation with user an
// app's call on page's edges acts on: the page's own, or that of its
// linked Instagram account when the user wrote there (and not to the
// page).
func (p *Platform) conversationAccount(page, user string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	account, ok := p.instagram[page]
	if !ok || p.threads[threadKey{page, user}] != nil || p.threads[threadKey{account, user}] == nil {
		return page
	}
	return account
}
